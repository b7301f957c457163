"""Both backends side by side, each on its own identical copy of the seeded database.

* control: the monolith under gunicorn on copy "control";
* candidate: the reviews, recommendations and catalog services in-process (Starlette TestClient,
  lifespan included) on copy "candidate", plus a second monolith on that copy that only
  runs the corpus's setup steps (legacy-only endpoints such as recording a view). The catalog
  view is rebuilt from the seed, and before each catalog case every event written since is
  applied to it (the embedded relay's work, once): its documents must then equal legacy's.

SQLite by default; when DATABASE_URL names PostgreSQL the copies are databases on that
server (``make test`` does both; under CI=true PostgreSQL must be there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.testclient import TestClient

import identity
from events import catalog, relay
from events.db import Database
from parity.corpus import Case, Request
from parity.diff import Observation
from services.catalog.app import create_app as create_catalog
from services.common.settings import load_settings
from services.recommendations.app import create_app as create_recommendations
from services.reviews.app import create_app as create_reviews
from tests.support.servers import is_postgres, legacy_env, legacy_server, seeded_copies

SECRET = "contract-identity-secret"
# Seeded ids: demo1..demo5 are users 1..5 (legacy_django/seed/data.py).
PERSONA_USER_IDS = {f"demo{n}": str(n) for n in range(1, 6)}


def sign(request: Request, request_id: str) -> dict[str, str]:
    """The headers the gateway would add for this persona (``forged``: demo1 with a broken signature)."""
    user = PERSONA_USER_IDS.get(request.persona, "1" if request.persona == "forged" else "")
    headers = identity.sign(
        SECRET,
        method=request.method,
        path=request.path,
        query=request.query,
        body=request.body or b"",
        user_id=user,
        scopes="user" if user else "",
        request_id=request_id,
    )
    if request.persona == "forged":
        headers[identity.HEADER_SIGNATURE] = "v2=" + "0" * 64
    if request.content_type is not None:
        headers["content-type"] = request.content_type
    return headers


@dataclasses.dataclass
class Backends:
    control: httpx.Client
    candidate_setup: httpx.Client
    services: dict[str, TestClient]
    fresh_after: datetime
    # The two database copies' URLs ("control", "candidate"): the event parity tests read their outboxes.
    database_urls: dict[str, str]

    def _send(self, client: httpx.Client | TestClient, request: Request, request_id: str) -> Observation:
        headers = sign(request, request_id)
        if request.body and len(request.body) > 64 * 1024:
            # gunicorn drains at most 64 KiB of a body the app did not read (a 413) and then drops the
            # connection, which the pool could hand to the next request: use this one once.
            headers["connection"] = "close"
        response = client.request(request.method, request.target, content=request.body, headers=headers)
        return Observation.of(response.status_code, response.headers, response.content)

    def setup(self, case: Case) -> None:
        for index, step in enumerate(case.setup):
            for client in (self.control, self.candidate_setup):
                observed = self._send(client, step, f"setup-{index}")
                assert observed.status < 300, f"setup step {index} of {case.id} failed: {observed}"

    def control_answer(self, case: Case, request_id: str) -> Observation:
        return self._send(self.control, case.request, request_id)

    def candidate_answer(self, case: Case, request_id: str) -> Observation:
        name = case.route.split(".", 1)[0]
        if name == "catalog":
            settle_view(self.database_urls["candidate"])
        return self._send(self.services[name], case.request, request_id)


def settle_view(database_url: str, *, rebuild: bool = False) -> None:
    """Apply every event not yet applied to the catalog view (after a rebuild from the tables)."""

    async def settle() -> None:
        db = Database(database_url)
        try:
            if rebuild:
                await catalog.rebuild(db)
            await relay.drain_embedded(db)
        finally:
            await db.dispose()

    asyncio.run(settle())


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    work = tmp_path_factory.mktemp("contract")
    database_url = os.environ.get("DATABASE_URL", "")
    postgres = database_url if is_postgres(database_url) else None
    # Timestamps written from here on are "fresh" (docs/parity.md).
    fresh_after = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    with seeded_copies(work, ("control", "candidate"), postgres, SECRET) as urls:
        control_env = legacy_env(work, urls["control"], SECRET)
        candidate_env = legacy_env(work, urls["candidate"], SECRET)
        with (
            legacy_server(control_env, work / "control.log") as control_url,
            legacy_server(candidate_env, work / "candidate-setup.log") as setup_url,
            httpx.Client(base_url=control_url, timeout=30) as control,
            httpx.Client(base_url=setup_url, timeout=30) as candidate_setup,
        ):
            settings = {
                name: dataclasses.replace(
                    load_settings(name, {}), database_url=urls["candidate"], identity_secret=SECRET
                )
                for name in ("reviews", "recommendations", "catalog")
            }
            settle_view(urls["candidate"], rebuild=True)
            with (
                TestClient(create_reviews(settings["reviews"])) as reviews,
                TestClient(create_recommendations(settings["recommendations"])) as recommendations,
                TestClient(create_catalog(settings["catalog"])) as catalog_service,
            ):
                yield Backends(
                    control=control,
                    candidate_setup=candidate_setup,
                    services={
                        "reviews": reviews,
                        "recommendations": recommendations,
                        "catalog": catalog_service,
                    },
                    fresh_after=fresh_after,
                    database_urls=urls,
                )
