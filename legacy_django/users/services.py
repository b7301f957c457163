from django.contrib.auth import authenticate
from django.http import HttpRequest

from legacy_django.common.auth import issue_access_token
from legacy_django.common.errors import InvalidCredentials, ValidationFailed
from legacy_django.users.models import User
from legacy_django.users.selectors import user_scopes


def token_issue(request: HttpRequest, data: dict[str, object]) -> dict[str, object]:
    """Exchange username + password for an access token.

    Unknown user and wrong password get the same error; Django's backend runs the
    password hasher in both cases so the timing does not tell them apart either.
    """
    errors = {
        field: ["must be a non-empty string"]
        for field in ("username", "password")
        if not isinstance(data.get(field), str) or not data.get(field)
    }
    if errors:
        raise ValidationFailed(errors)
    user = authenticate(request, username=data["username"], password=data["password"])
    if not isinstance(user, User) or not user.is_active:
        raise InvalidCredentials()
    scopes = user_scopes(user)
    token, ttl = issue_access_token(user.pk, scopes)
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scopes}
