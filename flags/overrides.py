"""Override stores: the kill switch every gateway worker sees within 100 ms, and the audit trail.

* ``FileOverrideStore`` (default): ``var/overrides.json`` replaced by atomic rename
  under an flock; a watcher thread in every process stats it every 20 ms. Audit
  lines go to ``var/audit.jsonl``.
* ``RedisOverrideStore`` (``REDIS_URL``): hash ``gateway:overrides`` (route → JSON),
  every change published on channel ``gateway:overrides`` and appended to stream
  ``gateway:audit``. A listener thread re-reads the hash on each message, and every
  few seconds anyway; when Redis is down it keeps the last known overrides, reports
  ``healthy() == False`` and reconnects with backoff. Every command has a short socket
  timeout and no client-side retry (``COMMAND_TIMEOUT_SECONDS``): a Redis that accepts
  connections and never answers costs a caller half a second, not tens of seconds.

Readers call ``snapshot()``: no I/O, an immutable mapping swapped whole. ``apply()`` and
``audit()`` do I/O and block: async callers run them in a worker thread. ``apply(…, expected=…)``
writes only if each named route still holds the override the caller saw (else ``OverrideConflict``
and nothing is written): the autopilot never overwrites a change a person made meanwhile.

Leases (``hold_lease``/``release_lease``): one holder at a time for a name across every process
sharing the store, until it stops renewing (the gateway's deciders: auto-offload, rollouts). Redis:
key ``gateway:lease:<name>`` set with ``NX``-like check-and-set and a ``PX`` expiry in one Lua script;
file: ``<overrides stem>.<name>.lease`` beside the overrides file (owner and expiry as JSON), read and
replaced under the same flock. A holder's clock is the machine's (file) or Redis's (Redis).

Rollouts (``flags.rollout``, ADR 0016): one document per route, read with ``rollouts()`` and written
only with ``apply(…, rollout=…)``, in the same conditional write as the override it changes (Redis:
hash ``gateway:rollouts`` in the same ``MULTI``; file: key ``rollouts`` of the overrides file itself,
replaced with the overrides by one rename). A rollout is written only over the version it was made
from (``OverrideConflict``). ``stored()`` reads the overrides from the store now (``snapshot()`` may
be a poll or a message behind): what a conditional write is checked against.

Figures (``put_figures``/``figures``): a small JSON document per gateway worker and topic, replaced by
that worker every half second and read by the rollout decider, so its gates weigh every worker of
every gateway process on the store. Redis: hash ``gateway:figures:<topic>`` (worker → document,
the hash expires when nobody writes); file: ``<overrides stem>.figures/<topic>/<worker>.json``.
Documents older than ``FIGURES_MAX_AGE_SECONDS`` are ignored (a worker that stopped).

A stored override or audit line that is not well formed (bad JSON, NaN, a 5 MB reason: see
``flags.model``) is skipped with one warning, never fatal: the rest stays readable and
writable, and the next write of the overrides file keeps only the well-formed entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flags.model import AuditEntry, Override
from flags.rollout import ABORTED, Plan, Rollout, person_kept, start_routes
from flags.rollout import ACTOR as ROLLOUT_ACTOR

logger = logging.getLogger("flags.overrides")
HASH_KEY = "gateway:overrides"
CHANNEL = "gateway:overrides"
AUDIT_STREAM = "gateway:audit"
AUDIT_MAX_LEN = 10_000
LEASE_PREFIX = "gateway:lease:"
ROLLOUTS_KEY = "gateway:rollouts"
FIGURES_PREFIX = "gateway:figures:"
FIGURES_MAX_AGE_SECONDS = 60.0
_LEASE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_TOPIC = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# Take the lease when it is free or ours (renew), in one step; answer who holds it afterwards.
_HOLD_LEASE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
COMMAND_TIMEOUT_SECONDS = 0.5
EMPTY: Mapping[str, Override] = MappingProxyType({})

# A change: the route and its new override, or None to release it.
Change = tuple[str, Override | None]


class OverrideStoreError(Exception):
    """The store cannot be written (Redis unreachable, file not writable)."""


class OverrideConflict(Exception):
    """``apply(expected=…)``: a route no longer holds the override the caller saw; nothing written."""


class OverrideStore(Protocol):
    def snapshot(self) -> Mapping[str, Override]: ...
    def healthy(self) -> bool: ...
    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        reason: str,
        expected: Mapping[str, Override | None] | None = None,
        rollout: Rollout | None = None,
    ) -> list[AuditEntry]: ...
    def stored(self) -> Mapping[str, Override]: ...
    def rollouts(self) -> Mapping[str, Rollout]: ...
    def put_figures(self, topic: str, worker: str, document: Mapping[str, Any]) -> None: ...
    def figures(self, topic: str, max_age: float = FIGURES_MAX_AGE_SECONDS) -> dict[str, Any]: ...
    def hold_lease(self, name: str, owner: str, ttl_seconds: float) -> str: ...
    def release_lease(self, name: str, owner: str) -> None: ...
    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


_warned: set[str] = set()


def _skip(where: str, exc: Exception) -> None:
    """Say once that a stored value is skipped: the console re-reads the same trail every 2 s."""
    problem = str(exc)[:300]
    key = f"{where}: {problem}"
    if key in _warned:
        return
    if len(_warned) >= 10_000:
        _warned.clear()
    _warned.add(key)
    logger.warning("skipping a malformed %s: %s", where, problem)


def _parse(raw: Mapping[str, Any], where: str, *, text: bool = False) -> Mapping[str, Override]:
    """The well-formed overrides of ``raw`` (values already parsed, or JSON ``text`` as Redis has them)."""
    parsed = {}
    for route, data in raw.items():
        try:
            parsed[route] = Override.from_json(json.loads(data) if text else data)
        except (ValueError, RecursionError) as exc:  # bad JSON (or too deep), or InvalidOverride
            _skip(f"override for {route[:100]!r} in {where}", exc)
    return MappingProxyType(parsed)


def _entry(line: str | None, where: str) -> AuditEntry | None:
    """One audit entry from its JSON text, or None (and a warning) when it is not well formed."""
    try:
        return AuditEntry.from_json(None if line is None else json.loads(line))
    except (ValueError, RecursionError) as exc:  # bad JSON (or too deep), or InvalidOverride
        _skip(f"audit entry ({where})", exc)
        return None


def _check_expected(current: Mapping[str, Override], expected: Mapping[str, Override | None] | None) -> None:
    for route, seen in (expected or {}).items():
        if current.get(route) != seen:
            raise OverrideConflict(f"the override of {route[:100]!r} changed since it was read")


def _parse_rollouts(raw: Mapping[str, Any], where: str, *, text: bool = False) -> dict[str, Rollout]:
    """The well-formed rollouts of ``raw`` (route → document, or its JSON ``text``)."""
    parsed = {}
    for route, data in raw.items():
        try:
            parsed[route] = Rollout.from_json(json.loads(data) if text else data)
        except (ValueError, RecursionError) as exc:
            _skip(f"rollout of {route[:100]!r} in {where}", exc)
    return parsed


def _check_version(stored: Mapping[str, Rollout], rollout: Rollout | None) -> None:
    """A rollout is written only over the version it was made from (the next one, or 1 for a new one)."""
    if rollout is None:
        return
    seen = stored[rollout.route].version if rollout.route in stored else 0
    if rollout.version != seen + 1:
        raise OverrideConflict(f"the rollout of {rollout.route[:100]!r} changed since it was read")


def _topic(topic: str) -> str:
    if not _TOPIC.fullmatch(topic):
        raise ValueError(f"a figures topic is lowercase letters, digits, '.', '-' and '_': {topic[:100]!r}")
    return topic


def _lease_key(name: str) -> str:
    if not _LEASE_NAME.fullmatch(name):
        raise ValueError(f"a lease name is lowercase letters, digits, - and _: {name[:64]!r}")
    return name


def _dumps(value: Any) -> str:
    # NaN and Infinity are not JSON: refuse to write them, whatever got past the checks.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


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

    def _document(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The raw overrides and rollouts of the file (one document: they are replaced together);
        ``ValueError`` when it is not an overrides document at all."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return {}, {}
        overrides = data.get("overrides", {}) if isinstance(data, dict) else None
        if not isinstance(overrides, dict):
            raise ValueError('not {"overrides": {route: override}, "rollouts": {route: rollout}}')
        rollouts = data.get("rollouts", {})
        if not isinstance(rollouts, dict):
            raise ValueError('"rollouts" is not {route: rollout}')
        return overrides, rollouts

    def _read(self) -> dict[str, Any]:
        return self._document()[0]

    def _reload(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        try:
            self._snapshot = _parse(self._read(), str(self.path))
            self._signature = signature
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("keeping the last overrides; %s is unreadable: %s", self.path, exc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        reason: str,
        expected: Mapping[str, Override | None] | None = None,
        rollout: Rollout | None = None,
    ) -> list[AuditEntry]:
        with self._locked():
            try:
                raw_overrides, raw_rollouts = self._document()
                current = dict(_parse(raw_overrides, str(self.path)))
                rollouts = _parse_rollouts(raw_rollouts, str(self.path))
            except (OSError, ValueError, RecursionError) as exc:
                raise OverrideStoreError(f"{self.path} is unreadable, fix or remove it: {exc}") from exc
            _check_expected(current, expected)
            _check_version(rollouts, rollout)
            # Built (and checked) before anything is written: a bad change writes nothing.
            entries = _entries(current, changes, actor, reason)
            if rollout is not None:
                rollouts[rollout.route] = rollout
            for route, after in changes:
                if after is None:
                    current.pop(route, None)
                else:
                    current[route] = after
            # One document, one rename: an override and the rollout that wrote it never part. Only
            # well-formed entries are written back: a hand-made bad one was skipped and said so.
            document = {
                "overrides": {route: override.to_json() for route, override in current.items()},
                "rollouts": {route: r.to_json() for route, r in rollouts.items()},
            }
            try:
                self._replace(self.path, json.dumps(document, indent=1, sort_keys=True, allow_nan=False))
                if entries:
                    with self.audit_path.open("a", encoding="utf-8") as audit:
                        audit.write("".join(_dumps(entry.to_json()) + "\n" for entry in entries))
            except OSError as exc:
                raise OverrideStoreError(f"cannot write {self.path}: {exc}") from exc
        self._reload()
        return entries

    def _replace(self, path: Path, text: str) -> None:
        """Write ``path`` whole, then rename it into place: a reader never sees half a document."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def stored(self) -> Mapping[str, Override]:
        """The overrides in the file now (I/O; ``snapshot`` may be a poll behind)."""
        try:
            return _parse(self._read(), str(self.path))
        except (OSError, ValueError, RecursionError) as exc:
            raise OverrideStoreError(f"{self.path} is unreadable, fix or remove it: {exc}") from exc

    def rollouts(self) -> Mapping[str, Rollout]:
        """Every route's rollout (the file is replaced whole: no lock needed to read it)."""
        try:
            return MappingProxyType(_parse_rollouts(self._document()[1], str(self.path)))
        except (OSError, ValueError, RecursionError) as exc:
            raise OverrideStoreError(f"{self.path} is unreadable, fix or remove it: {exc}") from exc

    def _figures_dir(self, topic: str) -> Path:
        return self.path.with_name(f"{self.path.stem}.figures") / _topic(topic)

    def put_figures(self, topic: str, worker: str, document: Mapping[str, Any]) -> None:
        """Replace ``worker``'s document of ``topic``."""
        directory = self._figures_dir(topic)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            name = _FILE_UNSAFE.sub("_", worker)[:120] + ".json"
            self._replace(directory / name, _dumps({"worker": worker, "figures": document}))
        except OSError as exc:
            raise OverrideStoreError(f"cannot write figures under {directory}: {exc}") from exc

    def figures(self, topic: str, max_age: float = FIGURES_MAX_AGE_SECONDS) -> dict[str, Any]:
        """worker → document of ``topic``, written within the last ``max_age`` seconds."""
        directory = self._figures_dir(topic)
        horizon = time.time() - max_age
        found: dict[str, Any] = {}
        try:
            paths = list(directory.glob("*.json"))
        except OSError as exc:
            raise OverrideStoreError(f"cannot read figures under {directory}: {exc}") from exc
        for path in paths:
            try:
                if path.stat().st_mtime < horizon:
                    if path.stat().st_mtime < horizon - 10 * max_age:
                        path.unlink(missing_ok=True)  # a worker long gone
                    continue
                data = json.loads(path.read_text(encoding="utf-8"))
                found[str(data["worker"])] = data["figures"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # replaced while read, or not ours: the next read has it
        return found

    def _lease_path(self, name: str) -> Path:
        return self.path.with_name(f"{self.path.stem}.{_lease_key(name)}.lease")

    def _lease_holder(self, path: Path, now: float) -> str | None:
        """The owner of an unexpired lease in ``path`` (None: free, expired or unreadable)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            owner, expires_at = data["owner"], data["expires_at"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or half-written by a crash: free (writes are atomic renames)
        if not isinstance(owner, str) or not isinstance(expires_at, int | float) or expires_at <= now:
            return None
        return owner

    def hold_lease(self, name: str, owner: str, ttl_seconds: float) -> str:
        """Take the lease ``name`` if it is free or expired, renew it if ``owner`` holds it; returns the
        holder afterwards (``owner`` when it holds it now)."""
        path = self._lease_path(name)
        try:
            with self._locked():
                now = time.time()
                holder = self._lease_holder(path, now)
                if holder is not None and holder != owner:
                    return holder
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(
                    json.dumps({"owner": owner, "expires_at": now + ttl_seconds}), encoding="utf-8"
                )
                os.replace(tmp, path)
                return owner
        except OSError as exc:
            raise OverrideStoreError(f"cannot write the lease {path}: {exc}") from exc

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it (else nothing)."""
        path = self._lease_path(name)
        try:
            with self._locked():
                if self._lease_holder(path, time.time()) == owner:
                    path.unlink(missing_ok=True)
        except OSError as exc:
            raise OverrideStoreError(f"cannot release the lease {path}: {exc}") from exc

    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        try:
            lines = self.audit_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        newest_first: list[AuditEntry] = []
        for number in range(len(lines) - 1, -1, -1):
            if len(newest_first) >= limit:
                break
            if not lines[number].strip():
                continue
            entry = _entry(lines[number], f"{self.audit_path} line {number + 1}")
            if entry is not None and (since is None or entry.at >= since):
                newest_first.append(entry)
        return newest_first[::-1]

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
    def __init__(
        self, url: str, *, resync_seconds: float = 5.0, command_timeout: float = COMMAND_TIMEOUT_SECONDS
    ) -> None:
        self.url = url
        # What error messages name (the admin API shows them): never the URL's password.
        parts = urlsplit(url)
        self._where = parts.netloc.rpartition("@")[2] + parts.path
        self.resync_seconds = resync_seconds
        # No client-side retries (redis-py retries a timeout ten times by default): the listener
        # has its own backoff, and an admin call must fail fast rather than wait out a dead Redis.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=command_timeout,
            socket_connect_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            encoding_errors="replace",  # one bad byte must not make the whole hash unreadable
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
        self._snapshot = _parse(raw, f"Redis hash {HASH_KEY}", text=True)
        self._healthy = True

    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        reason: str,
        expected: Mapping[str, Override | None] | None = None,
        rollout: Rollout | None = None,
    ) -> list[AuditEntry]:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(HASH_KEY, ROLLOUTS_KEY)  # type: ignore[no-untyped-call]
                        raw = cast(dict[str, str], pipe.hgetall(HASH_KEY))
                        current = _parse(raw, f"Redis hash {HASH_KEY}", text=True)
                        _check_expected(current, expected)  # under WATCH: a later change redoes this
                        if rollout is not None:
                            stored = cast(str | None, pipe.hget(ROLLOUTS_KEY, rollout.route))
                            seen = {} if stored is None else {rollout.route: stored}
                            _check_version(_parse_rollouts(seen, ROLLOUTS_KEY, text=True), rollout)
                        # Built (and checked) before MULTI: a bad change writes nothing.
                        entries = _entries(current, changes, actor, reason)
                        pipe.multi()
                        if rollout is not None:
                            pipe.hset(ROLLOUTS_KEY, rollout.route, _dumps(rollout.to_json()))
                        for route, after in changes:
                            if after is None:
                                pipe.hdel(HASH_KEY, route)
                            else:
                                pipe.hset(HASH_KEY, route, _dumps(after.to_json()))
                        for entry in entries:
                            pipe.xadd(
                                AUDIT_STREAM,
                                {"entry": _dumps(entry.to_json())},
                                maxlen=AUDIT_MAX_LEN,
                                approximate=True,
                            )
                        if changes or rollout is None:
                            pipe.publish(CHANNEL, json.dumps([route for route, _ in changes]))
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue  # someone else changed the hash between our read and write; redo
            self._resync()
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        return entries

    def stored(self) -> Mapping[str, Override]:
        """The overrides in Redis now (a command; ``snapshot`` may be a message behind)."""
        try:
            raw = cast(dict[str, str], self._client.hgetall(HASH_KEY))
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        return _parse(raw, f"Redis hash {HASH_KEY}", text=True)

    def rollouts(self) -> Mapping[str, Rollout]:
        try:
            raw = cast(dict[str, str], self._client.hgetall(ROLLOUTS_KEY))
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        return MappingProxyType(_parse_rollouts(raw, f"Redis hash {ROLLOUTS_KEY}", text=True))

    def put_figures(self, topic: str, worker: str, document: Mapping[str, Any]) -> None:
        """Replace ``worker``'s document of ``topic``; the hash expires once nobody writes it."""
        key = FIGURES_PREFIX + _topic(topic)
        value = _dumps({"at": time.time(), "figures": document})
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, worker, value)
                pipe.expire(key, int(FIGURES_MAX_AGE_SECONDS * 2))
                pipe.execute()
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc

    def figures(self, topic: str, max_age: float = FIGURES_MAX_AGE_SECONDS) -> dict[str, Any]:
        """worker → document of ``topic``, written within the last ``max_age`` seconds (older ones,
        left by workers that stopped, are removed)."""
        key = FIGURES_PREFIX + _topic(topic)
        try:
            raw = cast(dict[str, str], self._client.hgetall(key))
            horizon = time.time() - max_age
            found: dict[str, Any] = {}
            stale = []
            for worker, value in raw.items():
                try:
                    data = json.loads(value)
                    at, document = float(data["at"]), data["figures"]
                except (ValueError, KeyError, TypeError):
                    stale.append(worker)
                    continue
                if at < horizon:
                    stale.append(worker)
                else:
                    found[worker] = document
            if stale:
                self._client.hdel(key, *stale)
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        return found

    def hold_lease(self, name: str, owner: str, ttl_seconds: float) -> str:
        """Take the lease ``name`` if it is free or expired, renew it if ``owner`` holds it; returns the
        holder afterwards (``owner`` when it holds it now). Expiry is Redis's: no clock skew."""
        key = LEASE_PREFIX + _lease_key(name)
        try:
            holder = self._client.eval(_HOLD_LEASE, 1, key, owner, max(1, int(ttl_seconds * 1000)))
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        return str(holder)

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back if ``owner`` holds it (else nothing)."""
        key = LEASE_PREFIX + _lease_key(name)
        try:
            self._client.eval(_RELEASE_LEASE, 1, key, owner)
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc

    def audit(self, *, since: float | None = None, limit: int = 50) -> list[AuditEntry]:
        try:
            rows = cast(
                list[tuple[str, dict[str, str]]],
                self._client.xrevrange(AUDIT_STREAM, count=limit if since is None else AUDIT_MAX_LEN),
            )
        except redis.RedisError as exc:
            raise OverrideStoreError(f"Redis at {self._where} is not reachable: {exc}") from exc
        entries = [
            entry
            for entry_id, fields in rows
            if (entry := _entry(fields.get("entry"), f"Redis stream {AUDIT_STREAM} id {entry_id}"))
        ]
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


# A person's change to a rollout: the rollout as it is → the rollout changed, and its override (or None).
RolloutChange = Callable[[Rollout], tuple[Rollout, Override | None]]
ROLLOUT_WRITE_ATTEMPTS = 5


def write_rollout(
    rollout: Rollout,
    override: Override | None,
    store: OverrideStore,
    *,
    expected: Mapping[str, Override | None] | None = None,
) -> None:
    """A rollout and its override in one conditional write (actor ``rollout``, its reason audited)."""
    changes: list[Change] = [] if override is None else [(rollout.route, override)]
    store.apply(changes, actor=ROLLOUT_ACTOR, reason=rollout.reason, expected=expected, rollout=rollout)


def start_rollouts(
    store: OverrideStore, routes: Sequence[str], plan: Plan, *, actor: str, reason: str, now: float
) -> list[Rollout]:
    """Start rolling out ``routes`` (one batch when several: ``start_routes``), each written over the
    override it found: refused (``RolloutStateError``) while a person's override holds one of them,
    and ``OverrideConflict`` if one changed between the read and the write. What flagctl and the admin
    API call."""
    current = store.stored()
    starts = start_routes(
        routes, plan, actor=actor, reason=reason, now=now, existing=store.rollouts(), overrides=current
    )
    for rollout, override in starts:
        write_rollout(rollout, override, store, expected={rollout.route: current.get(rollout.route)})
    return [rollout for rollout, _ in starts]


def change_rollout(store: OverrideStore, route: str, change: RolloutChange) -> Rollout:
    """Read ``route``'s rollout, change it, write it; from a fresh read again when it changed meanwhile
    (the decider rewrites a running rollout about every second). ``KeyError``: no rollout of
    ``route``; ``OverrideConflict`` after ``ROLLOUT_WRITE_ATTEMPTS``; what ``change`` raises."""
    for attempt in range(ROLLOUT_WRITE_ATTEMPTS):
        before = store.rollouts()[route]
        changed, override = change(before)
        expected = None
        if changed.state == ABORTED and override is not None:
            # Back to legacy only over the rollout's own override: a person's one stays.
            current = store.stored().get(route)
            if current != before.applied:
                changed, override = person_kept(changed, before, current), None
            else:
                expected = {route: current}
        try:
            write_rollout(changed, override, store, expected=expected)
        except OverrideConflict:
            if attempt == ROLLOUT_WRITE_ATTEMPTS - 1:
                raise
            continue
        return changed
    raise AssertionError("unreachable")
