"""One decider at a time across every gateway process on an override store: the lease, the store calls
and the loop that auto-offload (gateway/autopilot.py, ADR 0014) and rollouts (gateway/rollout.py,
ADR 0016) share.

Every worker runs the loop; each tick it takes or renews a lease in the override store
(``hold_lease``: one holder per name across every process on the store, until it stops renewing)
and only the holder decides. Store calls are blocking (file or Redis I/O): they run in a thread and
get ``STORE_TIMEOUT_SECONDS``, so a hung store costs a tick, never the event loop. Nothing ends the
loop: a tick that fails is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flags.overrides import OverrideStore, OverrideStoreError

logger = logging.getLogger("gateway.decider")
T = TypeVar("T")

STORE_TIMEOUT_SECONDS = 2.0
# The lease outlives this many intervals: a leader that dies is replaced within about three ticks.
LEASE_INTERVALS = 3
MIN_LEASE_SECONDS = 3.0


def default_owner() -> str:
    """Who holds a lease, as people read it: host, process and a nonce (pids repeat)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def lease_seconds(interval_seconds: float) -> float:
    return max(LEASE_INTERVALS * interval_seconds, MIN_LEASE_SECONDS)


async def store_call(call: Callable[[], T]) -> T:
    """A blocking store call in a thread, within ``STORE_TIMEOUT_SECONDS`` (else ``TimeoutError``)."""
    return await asyncio.wait_for(asyncio.to_thread(call), STORE_TIMEOUT_SECONDS)


class Lease:
    """This worker's view of one lease: who holds it (``leader``, as last seen) and whether it is us."""

    def __init__(self, name: str, owner: str | None = None) -> None:
        self.name = name
        self.owner = owner or default_owner()
        self.leader: str | None = None  # the holder as last seen (None: not deciding, or unknown)
        self.took_over = False  # the last ``hold`` made this worker the decider
        self.problem: str | None = None  # why the last ``hold`` could not reach the store

    @property
    def leading(self) -> bool:
        return self.leader == self.owner

    async def hold(self, store: OverrideStore, seconds: float) -> bool:
        """Take or renew the lease for ``seconds``; True while this worker holds it. A store that fails
        or does not answer in time: False, and nobody is known to decide."""
        was_leading = self.leading
        try:
            holder = await store_call(lambda: store.hold_lease(self.name, self.owner, seconds))
        except (OverrideStoreError, TimeoutError) as exc:
            self.problem = f"cannot reach the override store for the lease: {exc}"[:300]
            if was_leading:
                logger.warning("%s: %s; not deciding until it answers", self.name, self.problem)
            self.leader, self.took_over = None, False
            return False
        self.problem, self.leader = None, holder
        self.took_over = self.leading and not was_leading
        if self.took_over:
            logger.info("%s: %s decides from now on", self.name, self.owner)
        return self.leading

    async def release(self, store: OverrideStore) -> None:
        """Give the lease back (shutdown, nothing to decide) so another worker takes over at once."""
        if self.leading:
            try:
                await store_call(lambda: store.release_lease(self.name, self.owner))
            except (OverrideStoreError, TimeoutError) as exc:
                logger.warning("%s: cannot release the lease (it expires by itself): %s", self.name, exc)
        self.leader, self.took_over = None, False


async def run_every(
    tick: Callable[[], Awaitable[object]],
    interval: Callable[[], float],
    failed: Callable[[Exception], None],
) -> None:
    """``tick`` every ``interval()`` seconds until cancelled; a failing tick goes to ``failed`` (which
    logs it), a failure repeating the one before only to a count, said when it ends: the same
    traceback twice a second would bury everything else in the log."""
    last: str | None = None
    repeats = 0
    while True:
        try:
            await tick()
        except Exception as exc:  # nothing may end the loop: the next tick tries again
            key = f"{type(exc).__name__}: {exc}"
            if key == last:
                repeats += 1
            else:
                _repeated(last, repeats)
                last, repeats = key, 0
                failed(exc)
        else:
            _repeated(last, repeats)
            last, repeats = None, 0
        await asyncio.sleep(interval())


def _repeated(failure: str | None, repeats: int) -> None:
    if failure is not None and repeats:
        logger.error("the tick failure %s repeated %d more time(s)", failure[:300], repeats)
