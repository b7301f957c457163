"""The development identity secret: the one definition every package's default reads.

Used when ``IDENTITY_SECRET`` is not set, so ``make run`` and the tests work out of the box.
Every app refuses it when ``GATEWAY_ENV=production``.
"""

DEV_SECRET = "dev-only-identity-secret"  # noqa: S105 - the documented development default
