"""Flag providers: a client-features JSON file (embedded default) and a real Unleash server.

Both compile what they read into an immutable ``Toggles`` snapshot and swap it
whole from a background thread; ``decide`` only reads ``provider.toggles``.
A provider that cannot refresh keeps its last known good snapshot and, once that
is older than ``stale_after`` seconds, reports ``stale`` (decisions then say so).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flags.unleash import EMPTY, Toggles

logger = logging.getLogger("flags.providers")


class FileFlagProvider:
    """Unleash's client-features JSON in a file (exported from or imported into Unleash), hot-reloaded."""

    name = "file"

    def __init__(self, path: Path, poll_seconds: float = 0.5) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self.toggles: Toggles = EMPTY
        self.error: str | None = None
        self._signature: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload()

    @property
    def stale(self) -> bool:
        return False  # a local file is as fresh as it gets; a broken edit keeps the last good one

    def reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self.toggles, self._signature = EMPTY, None
            return
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._signature:
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            self.toggles = Toggles.compile(document)
            self.error = None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self.error = f"{self.path}: {exc}"
            logger.warning("keeping the last good flags; %s", self.error)
        self._signature = signature

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.reload()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="flags-file-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class UnleashProvider:
    """Polls ``GET {url}/api/client/features`` with a backend token; bootstrapped from a cache file.

    Create and ``start()`` it in each worker after the fork (threads do not survive a
    fork). The cache file lets a worker start with the last known toggles while the
    Unleash server is down.
    """

    name = "unleash"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        cache_file: Path,
        refresh_seconds: float = 15.0,
        timeout_seconds: float = 2.0,
        stale_after: float | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/api/client/features"
        self.token = token
        self.cache_file = cache_file
        self.refresh_seconds = refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.stale_after = stale_after if stale_after is not None else 3 * refresh_seconds
        self.toggles: Toggles = EMPTY
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bootstrap()

    @property
    def stale(self) -> bool:
        return self.last_success is None or time.time() - self.last_success > self.stale_after

    def _bootstrap(self) -> None:
        try:
            self.toggles = Toggles.compile(json.loads(self.cache_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("ignoring an unreadable Unleash cache %s: %s", self.cache_file, exc)

    def _save(self, document: dict[str, Any]) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(document), encoding="utf-8")
        os.replace(tmp, self.cache_file)

    def refresh(self) -> bool:
        """One fetch; True when the server answered (changed or not)."""
        headers = {
            "Authorization": self.token,
            "Accept": "application/json",
            "UNLEASH-APPNAME": "strangler-gateway",
        }
        if self._etag:
            headers["If-None-Match"] = self._etag
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310 - configured URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                document = json.loads(response.read())
                self.toggles = Toggles.compile(document)
                self._etag = response.headers.get("ETag")
                self._save(document)
        except urllib.error.HTTPError as exc:
            if exc.code != 304:
                self.last_error = f"HTTP {exc.code}"
                return False
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self.last_error = str(exc)
            return False
        self.last_success = time.time()
        self.last_error = None
        return True

    def _poll(self) -> None:
        while True:
            if not self.refresh():
                logger.warning("Unleash refresh failed (%s); keeping the last known toggles", self.last_error)
            if self._stop.wait(self.refresh_seconds):
                return

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="flags-unleash-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_seconds + 1)
