"""The spike replay's clients: an open-loop load that sends on schedule whatever the answers.

Requests leave at the rate the timeline gives (calm, ramp, spike, calm), each from one of the
signed-in users, with a 2 s client timeout and no retries; each gets an ``X-Request-Id`` the probe
finds again in legacy's access log. What each got is one ``Outcome``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench._replay_report import Outcome

CALM_RPS = 40.0
CLIENT_TIMEOUT_S = 2.0
MIX = (("list", 60), ("summary", 15), ("home", 15), ("detail", 5), ("create", 5))
READ_MIX = (("list", 60), ("summary", 15), ("home", 15), ("detail", 5))
READ_ITEMS = (1, 300)  # reads and writes on separate items: see incident_replay's docstring
WRITE_ITEMS = (301, 500)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    calm_s: float  # calm load first: mode c's shadow parity evidence gathers here
    ramp_s: float  # then up to the spike
    spike_rps: float
    flip_at_s: float  # the human flip (modes a and b)
    spike_end_s: float  # back to calm
    seconds: int


# 320 req/s: about 1.4x what legacy (1 worker x 2 threads) finishes per second while it shares the
# 2 cores with the whole stack (205-235 req/s in the replays), and within what the two services carry
# on the same cores. At 450 the services could not carry the spike either: no mode recovered.
QUICK = Timeline(calm_s=5, ramp_s=4, spike_rps=320, flip_at_s=16, spike_end_s=34, seconds=42)
FULL = Timeline(calm_s=10, ramp_s=8, spike_rps=320, flip_at_s=30, spike_end_s=60, seconds=75)


def rate(second: float, timeline: Timeline) -> float:
    if second < timeline.calm_s or second >= timeline.spike_end_s:
        return CALM_RPS
    ramp = min(1.0, (second - timeline.calm_s) / timeline.ramp_s)
    return CALM_RPS + (timeline.spike_rps - CALM_RPS) * ramp


def sign_in(gateway: str, users: int) -> list[str]:
    """Tokens for user00001… fetched before the load (sign-in is not what the spike is about)."""
    import httpx

    tokens = []
    for n in range(1, users + 1):
        response = httpx.post(
            f"{gateway}/api/v1/auth/token",
            timeout=30,
            json={"username": f"user{n:05d}", "password": "demo-password"},
        )
        response.raise_for_status()
        tokens.append(response.json()["access_token"])
    return tokens


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "not_an_envelope"


def run(
    gateway: str,
    tokens: Sequence[str],
    timeline: Timeline,
    start_at: float,
    mode: str,
    marker: str,
    events: Sequence[tuple[float, str, Callable[[], None]]],
    mix: Sequence[tuple[str, int]] = MIX,
) -> tuple[list[Outcome], dict[str, float], list[float]]:
    """The load from ``start_at`` (monotonic) for ``timeline.seconds``.

    Returns every request's outcome, when each event ran (seconds since the start) and, per
    second, the worst lateness of the generator's own loop in ms (above ~100 ms the clients'
    latencies are partly the generator's).
    """
    return asyncio.run(_run(gateway, tokens, timeline, start_at, mode, marker, events, mix))


async def _run(
    gateway: str,
    tokens: Sequence[str],
    timeline: Timeline,
    start_at: float,
    mode: str,
    marker: str,
    events: Sequence[tuple[float, str, Callable[[], None]]],
    mix: Sequence[tuple[str, int]],
) -> tuple[list[Outcome], dict[str, float], list[float]]:
    import aiohttp  # a bench extra: imported here so --help works without it

    results: list[Outcome] = []
    kinds = [name for name, weight in mix for _ in range(weight)]
    rng = random.Random(7)  # noqa: S311 - the same load mix in every mode, not security
    happened: dict[str, float] = {}
    lag = [0.0] * timeline.seconds
    # No connection cap: a client that waits is a client of the gateway, not of our pool.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one(sequence: int, sent: float, kind: str) -> None:
            headers = {
                "Authorization": f"Bearer {rng.choice(tokens)}",
                "X-Request-Id": f"{mode}-{sequence:07d}",
            }
            write_id = ""
            if kind == "create":
                write_id = uuid.uuid4().hex
                body = {"item_id": rng.randint(*WRITE_ITEMS), "rating": 5, "body": f"{marker} {write_id}"}
                request = session.post(f"{gateway}/api/v1/reviews", json=body, headers=headers)
            else:
                item = rng.randint(*READ_ITEMS)
                path = {
                    "list": f"/api/v1/reviews/items/{item}?size=20",
                    "summary": f"/api/v1/reviews/items/{item}/summary",
                    "home": "/api/v1/recommendations/home?limit=10",
                    "detail": f"/api/v1/reviews/{rng.randint(1, 20000)}",
                }[kind]
                request = session.get(f"{gateway}{path}", headers=headers)
            served, code, retry_after = "", "", ""
            try:
                async with request as response:
                    data = await response.read()
                    status = response.status
                    served = response.headers.get("X-Served-By", "")
                    retry_after = response.headers.get("Retry-After", "")
                    if status >= 500:
                        code = _error_code(data)
            except TimeoutError:
                status, code = 0, "client_timeout"
            except aiohttp.ClientError as exc:
                status, code = 0, type(exc).__name__
            latency = (time.monotonic() - sent) * 1000
            results.append(
                Outcome(
                    sent - start_at,
                    latency,
                    status,
                    kind,
                    served,
                    code,
                    headers["X-Request-Id"],
                    write_id,
                    retry_after,
                )
            )

        while time.monotonic() < start_at:
            await asyncio.sleep(0.01)
        tasks: set[asyncio.Task[None]] = set()
        next_at, sequence = start_at, 0
        while (now := time.monotonic()) - start_at < timeline.seconds:
            elapsed = now - start_at
            for at, name, action in events:
                if name not in happened and elapsed >= at:
                    happened[name] = elapsed
                    action()
            while next_at <= now:
                task = asyncio.create_task(one(sequence, next_at, rng.choice(kinds)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sequence += 1
                next_at += 1.0 / rate(next_at - start_at, timeline)
            asked = time.monotonic()
            await asyncio.sleep(0.002)
            late = (time.monotonic() - asked - 0.002) * 1000
            second = int(asked - start_at)
            if 0 <= second < len(lag):
                lag[second] = max(lag[second], late)
        await asyncio.gather(*tasks)
    return results, happened, lag
