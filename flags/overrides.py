"""Override stores: the kill switch every gateway worker sees within 100 ms, and the audit trail.

* ``FileOverrideStore`` (default): ``var/overrides.json`` replaced by atomic rename
  under an flock; a watcher thread in every process stats it every 20 ms. Audit
  lines go to ``var/audit.jsonl``.
* ``RedisOverrideStore`` (``REDIS_URL``): hash ``gateway:overrides`` (route → JSON),
  every change published on channel ``gateway:overrides`` and appended to stream
  ``gateway:audit``. A listener thread re-reads the hash on each message, and every
  few seconds anyway; when Redis is down it keeps the last known overrides, reports
  ``healthy() == False`` and reconnects with backoff.

Readers call ``snapshot()``: no I/O, an immutable mapping swapped whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, cast

import redis

from flags.model import AuditEntry, Override

logger = logging.getLogger("flags.overrides")
HASH_KEY = "gateway:overrides"
CHANNEL = "gateway:overrides"
AUDIT_STREAM = "gateway:audit"
AUDIT_MAX_LEN = 10_000
EMPTY: Mapping[str, Override] = MappingProxyType({})

# A change: the route and its new override, or None to release it.
Change = tuple[str, Override | None]


class OverrideStoreError(Exception):
    """The store cannot be written (Redis unreachable, file not writable)."""


class OverrideStore(Protocol):
    def snapshot(self) -> Mapping[str, Override]: ...
    def healthy(self) -> bool: ...
    def apply(self, changes: Sequence[Change], *, actor: str, reason: str) -> list[AuditEntry]: ...
    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


def _parse(raw: Mapping[str, Any]) -> Mapping[str, Override]:
    parsed = {}
    for route, data in raw.items():
        try:
            parsed[route] = Override.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring malformed override for %s: %s", route, exc)
    return MappingProxyType(parsed)


def _entries(
    current: Mapping[str, Override], changes: Sequence[Change], actor: str, reason: str
) -> list[AuditEntry]:
    now = time.time()
    entries = []
    for route, after in changes:
        before = current.get(route)
        entries.append(
            AuditEntry(
                route=route,
                action="set" if after is not None else "release",
                actor=actor,
                reason=reason,
                at=now,
                before=before.to_json() if before else None,
                after=after.to_json() if after else None,
            )
        )
    return entries


class FileOverrideStore:
    def __init__(self, path: Path, audit_path: Path, poll_seconds: float = 0.02) -> None:
        self.path = path
        self.audit_path = audit_path
        self.poll_seconds = poll_seconds
        self._snapshot: Mapping[str, Override] = EMPTY
        self._signature: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reload()

    def snapshot(self) -> Mapping[str, Override]:
        return self._snapshot

    def healthy(self) -> bool:
        return True

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return dict(data.get("overrides", {}))

    def _reload(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        try:
            self._snapshot = _parse(self._read())
            self._signature = signature
        except (OSError, ValueError) as exc:
            logger.warning("keeping the last overrides; %s is unreadable: %s", self.path, exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def apply(self, changes: Sequence[Change], *, actor: str, reason: str) -> list[AuditEntry]:
        with self._locked():
            raw = self._read()
            entries = _entries(_parse(raw), changes, actor, reason)
            for route, after in changes:
                if after is None:
                    raw.pop(route, None)
                else:
                    raw[route] = after.to_json()
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"overrides": raw}, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
            with self.audit_path.open("a", encoding="utf-8") as audit:
                for entry in entries:
                    audit.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
        self._reload()
        return entries

    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        try:
            lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = [AuditEntry.from_json(json.loads(line)) for line in lines if line.strip()]
        if since is not None:
            entries = [entry for entry in entries if entry.at >= since]
        return entries[-limit:]

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self._reload()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="overrides-file-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class RedisOverrideStore:
    def __init__(self, url: str, *, resync_seconds: float = 5.0) -> None:
        self.url = url
        self.resync_seconds = resync_seconds
        self._client = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
        )
        self._snapshot: Mapping[str, Override] = EMPTY
        self._healthy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with contextlib.suppress(redis.RedisError):
            self._resync()

    def snapshot(self) -> Mapping[str, Override]:
        return self._snapshot

    def healthy(self) -> bool:
        return self._healthy

    def _resync(self) -> None:
        raw = cast(dict[str, str], self._client.hgetall(HASH_KEY))
        self._snapshot = _parse({route: json.loads(value) for route, value in raw.items()})
        self._healthy = True

    def apply(self, changes: Sequence[Change], *, actor: str, reason: str) -> list[AuditEntry]:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(HASH_KEY)  # type: ignore[no-untyped-call]
                        raw = cast(dict[str, str], pipe.hgetall(HASH_KEY))
                        current = _parse({r: json.loads(v) for r, v in raw.items()})
                        entries = _entries(current, changes, actor, reason)
                        pipe.multi()
                        for route, after in changes:
                            if after is None:
                                pipe.hdel(HASH_KEY, route)
                            else:
                                pipe.hset(HASH_KEY, route, json.dumps(after.to_json()))
                        for entry in entries:
                            pipe.xadd(
                                AUDIT_STREAM,
                                {"entry": json.dumps(entry.to_json(), ensure_ascii=False)},
                                maxlen=AUDIT_MAX_LEN,
                                approximate=True,
                            )
                        pipe.publish(CHANNEL, json.dumps([route for route, _ in changes]))
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue  # someone else changed the hash between our read and write; redo
            self._resync()
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self.url} is not reachable: {exc}") from exc
        return entries

    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        try:
            rows = cast(
                list[tuple[str, dict[str, str]]],
                self._client.xrevrange(AUDIT_STREAM, count=limit if since is None else AUDIT_MAX_LEN),
            )
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self.url} is not reachable: {exc}") from exc
        entries = [AuditEntry.from_json(json.loads(fields["entry"])) for _, fields in rows]
        if since is not None:
            entries = [entry for entry in entries if entry.at >= since]
        return list(reversed(entries[:limit]))

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(CHANNEL)
                self._resync()  # anything published while we were away
                backoff = 0.1
                last_resync = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None or time.monotonic() - last_resync > self.resync_seconds:
                        self._resync()
                        last_resync = time.monotonic()
            except (redis.RedisError, OSError, ValueError) as exc:
                if self._healthy:
                    logger.warning("Redis overrides unavailable, keeping the last known ones: %s", exc)
                self._healthy = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="overrides-redis-listen", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._client.close()
        self._client.connection_pool.disconnect()
