"""Suite-wide settings: under CI=true a missing service is a failure, never a skip."""

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(reachable: bool, what: str) -> None:
    """Skip a test that needs ``what`` on a developer machine; fail it in CI."""
    if reachable:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not reachable")
    pytest.skip(f"{what} is not reachable")
