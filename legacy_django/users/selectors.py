from legacy_django.common.errors import Unauthenticated
from legacy_django.users.models import User

DEFAULT_SCOPES = "user"
STAFF_SCOPES = "user admin"


def user_get_active(user_id: int) -> User:
    """The signed-in user, or 401 when the token names a user that no longer exists or is disabled."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise Unauthenticated("Invalid or expired credentials.")
    return user


def user_scopes(user: User) -> str:
    return STAFF_SCOPES if user.is_staff else DEFAULT_SCOPES
