"""``python -m legacy_django signing_keys ensure|list|rotate|retire KID``."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy_django.common.signing_keys import DirectoryKeyStore, KeyStoreError, get_key_store


class Command(BaseCommand):
    help = (
        "Manage the auth issuer's RS256 keys. Examples:\n"
        "  signing_keys ensure         create the first key if there is none\n"
        "  signing_keys rotate         add a key and sign with it; the old one stays published\n"
        "  signing_keys retire KID     stop publishing (and accepting) an old key"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["ensure", "list", "rotate", "retire"])
        parser.add_argument("kid", nargs="?")

    def handle(self, *args: Any, action: str, kid: str | None, **options: Any) -> None:
        store = get_key_store()
        if action != "list":
            if not isinstance(store, DirectoryKeyStore):
                raise CommandError("keys come from JWT_PRIVATE_KEY; rotate by changing the environment")
            self._change(store, action, kid)
        keyset = store.current()
        for published in keyset.published.values():
            marker = "active" if published.kid == keyset.active.kid else "published"
            self.stdout.write(f"{published.kid}  {marker}")

    def _change(self, store: DirectoryKeyStore, action: str, kid: str | None) -> None:
        try:
            if action == "ensure":
                store.ensure()
            elif action == "rotate":
                self.stdout.write(f"active key is now {store.rotate().kid}")
            elif action == "retire":
                if not kid:
                    raise CommandError("retire needs the KID of the key to remove")
                store.retire(kid)
                self.stdout.write(f"retired {kid}")
        except KeyStoreError as exc:
            raise CommandError(str(exc)) from exc
