"""Replay a corpus against the control (legacy) and a candidate, with Diffy-style noise cancellation.

For a read (GET/HEAD without setup) the control is called twice and the candidate once; a
difference that shows up between the two control calls is *noise* for that place and is not
a mismatch (it is counted and listed). Writes (and cases with setup steps) are replayed only
with ``writes=True``, which requires each backend to run on its own copy of the same data.

Two ways to reach the backends:

* direct: ``control`` URL and one URL per candidate cluster (``reviews``, ``recommendations``);
  requests carry the identity assertion signed with ``identity_secret``;
* through the gateway: the same URL for both, with ``X-Force-Backend: legacy|candidate`` and the
  gateway's admin token; requests carry the persona's Bearer token.

Personas sign in once through the token endpoint (``/api/v1/auth/token``) of the control or gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

import identity
from identity.dev import DEV_SECRET
from parity.corpus import Case, Request
from parity.diff import Difference, Observation, compare
from parity.rules import NO_RULES, Rules

SAFE_METHODS = frozenset({"GET", "HEAD"})
FORGED_SIGNATURE = "v2=" + "0" * 64
# A body this large may be answered (413, 401, 405) before it is read. gunicorn then drains at most
# 64 KiB of it and closes the connection, although its answer said keep-alive, so the next request
# on that pooled connection fails with "Server disconnected". Such a request goes on a connection of
# its own, used once. (``Connection: close`` does not do: gunicorn then closes without draining at all,
# and the reset can reach the client before the answer is read.)
OWN_CONNECTION_ABOVE = 64 * 1024


def _request_line(request: Request) -> tuple[str, str]:
    """Path and query as httpx will put them on the request line (it re-encodes some characters,
    e.g. a space or non-ASCII in a query): the assertion must sign what the backend receives."""
    path, _, query = httpx.URL(request.target).raw_path.decode("latin-1").partition("?")
    return path, query


class RunnerError(Exception):
    """The run cannot start (a backend unreachable, a persona cannot sign in)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    control: str | None = None
    candidates: dict[str, str] = field(default_factory=dict)
    gateway: str | None = None
    admin_token: str | None = None
    identity_secret: str = DEV_SECRET
    setup_candidate: str | None = None
    writes: bool = False
    concurrency: int = 8
    noise: bool = True
    password: str = "demo-password"  # noqa: S105 - the seeded demo users' password
    rules: Rules = NO_RULES
    timeout: float = 30.0


@dataclass(kw_only=True, slots=True)
class CaseResult:
    case: Case
    status: str  # match | mismatch | error | skipped
    differences: list[Difference] = field(default_factory=list)
    noise: list[Difference] = field(default_factory=list)
    ignored: list[tuple[Difference, str]] = field(default_factory=list)
    control: Observation | None = None
    candidate: Observation | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Persona:
    user_id: str
    token: str


def _subject(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def _describe(exc: Exception) -> str:
    """One line for an error row: which request failed and how (httpx's own text is often empty)."""
    if not isinstance(exc, httpx.RequestError):
        return str(exc) or type(exc).__name__
    try:
        where = f"{exc.request.method} {exc.request.url}"
    except RuntimeError:  # no request attached
        where = "a request"
    if isinstance(exc, httpx.TimeoutException):
        how = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        how = "could not connect"
    else:
        how = "failed"
    return f"{where} {how}: {str(exc) or type(exc).__name__}"


class Runner:
    def __init__(self, config: RunConfig, client: httpx.AsyncClient) -> None:
        if config.gateway is None and (config.control is None or not config.candidates):
            raise RunnerError("give --gateway, or --control and at least one --candidate")
        self.config = config
        self.client = client
        self.personas: dict[str, Persona] = {}
        self.fresh_after = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)

    async def sign_in(self, names: set[str]) -> None:
        url = f"{self.config.gateway or self.config.control}/api/v1/auth/token"
        for name in sorted(names):
            try:
                response = await self.client.post(
                    url, json={"username": name, "password": self.config.password}
                )
            except httpx.HTTPError as exc:
                raise RunnerError(f"cannot reach {url}: {exc}") from exc
            if response.status_code != 200:
                raise RunnerError(f"persona {name} cannot sign in at {url}: HTTP {response.status_code}")
            try:
                token = response.json()["access_token"]
                self.personas[name] = Persona(user_id=_subject(token), token=token)
            except (ValueError, LookupError, TypeError, AttributeError) as exc:
                kind = response.headers.get("content-type", "no content type")
                raise RunnerError(
                    f"persona {name} cannot sign in at {url}: the answer ({kind}) holds no access token "
                    f"with a subject ({type(exc).__name__}: {exc})"
                ) from exc

    def _headers(self, request: Request, request_id: str) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if request.content_type is not None:
            headers["content-type"] = request.content_type
        persona = self.personas.get("demo1" if request.persona == "forged" else request.persona)
        if request.persona.startswith("user:"):  # captured traffic: a user id, no password to sign in with
            persona = Persona(user_id=request.persona.removeprefix("user:"), token="")
        if self.config.gateway is not None:
            if persona is not None:
                token = persona.token if request.persona != "forged" else persona.token[:-4] + "AAAA"
                headers["authorization"] = f"Bearer {token}"
            return headers
        path, query = _request_line(request)
        signed = identity.sign(
            self.config.identity_secret,
            method=request.method,
            path=path,
            query=query,
            body=request.body or b"",
            user_id=persona.user_id if persona else "",
            scopes="user" if persona else "",
            request_id=request_id,
        )
        if request.persona == "forged":
            signed[identity.HEADER_SIGNATURE] = FORGED_SIGNATURE
        return {**headers, **signed}

    async def _send(
        self, base: str, request: Request, request_id: str, force: str | None = None
    ) -> Observation:
        headers = self._headers(request, request_id)
        if force is not None:
            headers["x-force-backend"] = force
            headers["x-gateway-admin-token"] = self.config.admin_token or ""
        url = f"{base}{request.target}"
        if request.body is not None and len(request.body) > OWN_CONNECTION_ABOVE:
            async with httpx.AsyncClient(timeout=self.client.timeout) as own:
                response = await own.request(request.method, url, content=request.body, headers=headers)
        else:
            response = await self.client.request(request.method, url, content=request.body, headers=headers)
        return Observation.of(response.status_code, response.headers, response.content)

    async def _control(self, request: Request, request_id: str) -> Observation:
        if self.config.gateway is not None:
            return await self._send(self.config.gateway, request, request_id, force="legacy")
        assert self.config.control is not None
        return await self._send(self.config.control, request, request_id)

    async def _candidate(self, case: Case, request_id: str) -> Observation:
        if self.config.gateway is not None:
            return await self._send(self.config.gateway, case.request, request_id, force="candidate")
        cluster = case.route.split(".", 1)[0]
        url = self.config.candidates.get(cluster)
        if url is None:
            raise RunnerError(f"no --candidate for cluster {cluster}")
        return await self._send(url, case.request, request_id)

    async def _setup(self, case: Case) -> None:
        targets = (
            [self.config.gateway]
            if self.config.gateway
            else [self.config.control, self.config.setup_candidate]
        )
        for index, step in enumerate(case.setup):
            for base in targets:
                if base is None:
                    raise RunnerError("cases with setup steps need --setup-candidate in direct mode")
                observed = await self._send(base, step, f"setup-{index}")
                if observed.status >= 300:
                    raise RunnerError(f"setup step {index} answered {observed.status}")

    def _skipped(self, case: Case) -> bool:
        read = case.request.method in SAFE_METHODS and not case.setup
        return not read and not self.config.writes

    async def run_case(self, case: Case) -> CaseResult:
        started = time.perf_counter()
        if self._skipped(case):
            return CaseResult(case=case, status="skipped", error="a write; replayed only with --writes")
        request_id = "parity-" + case.id.replace("/", ".")
        try:
            await self._setup(case)
            control = await self._control(case.request, request_id)
            noise: list[Difference] = []
            if self.config.noise and case.request.method in SAFE_METHODS:
                again = await self._control(case.request, request_id)
                noise = compare(control, again, fresh_after=self.fresh_after)
            candidate = await self._candidate(case, request_id)
        except (httpx.HTTPError, RunnerError) as exc:
            return CaseResult(
                case=case,
                status="error",
                error=_describe(exc),
                seconds=time.perf_counter() - started,
            )
        noisy = {d.where for d in noise}
        differences, ignored = [], []
        for difference in compare(control, candidate, fresh_after=self.fresh_after):
            rule = self.config.rules.ignored(case.route, difference)
            if rule is not None:
                ignored.append((difference, rule.reason))
            elif difference.where not in noisy:
                differences.append(difference)
        return CaseResult(
            case=case,
            status="mismatch" if differences else "match",
            differences=differences,
            noise=noise,
            ignored=ignored,
            control=control,
            candidate=candidate,
            seconds=time.perf_counter() - started,
        )

    async def run(
        self, cases: Sequence[Case], progress: Callable[[CaseResult], None] | None = None
    ) -> list[CaseResult]:
        """Reads run ``concurrency`` at a time; a write waits for what came before and blocks what follows."""
        personas = {c.request.persona for c in cases} | {s.persona for c in cases for s in c.setup}
        await self.sign_in(
            {p for p in personas if p.startswith("demo")} | ({"demo1"} if "forged" in personas else set())
        )
        results: list[CaseResult] = []
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(case: Case) -> CaseResult:
            async with limit:
                result = await self.run_case(case)
            if progress is not None:
                progress(result)
            return result

        batch: list[Case] = []
        for case in [*cases, None]:
            concurrent = case is not None and case.request.method in SAFE_METHODS and not case.setup
            if concurrent:
                batch.append(case)  # type: ignore[arg-type]
                continue
            results += await asyncio.gather(*(one(c) for c in batch))
            batch = []
            if case is not None:
                results.append(await one(case))
        return results
