"""A TCP forwarder that can go silent: the "reachable but never answers" outage (a blackholed Redis).

``Blackhole(target)`` forwards to ``target`` until ``silence()``. From then on it still accepts
connections and reads whatever clients send, but forwards nothing and answers nothing; bytes on
connections opened before are swallowed too. Unlike ``TcpProxy.cut()`` (connections refused or
reset: clients fail fast), a client only learns of this outage from its own timeouts.
``Blackhole(None)`` is silent from the start; ``restore()`` forwards again (on new connections).
``close()`` drops every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Blackhole:
    def __init__(self, target: tuple[str, int] | None) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._silent = threading.Event()
        if target is None:
            self._silent.set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self.accepted = 0  # connections accepted so far, silent or not
        threading.Thread(target=self._accept, name="blackhole-accept", daemon=True).start()

    def silence(self) -> None:
        """From now on: accept, read, never answer (open connections included)."""
        self._silent.set()

    def restore(self) -> None:
        """Forward again, on new connections: those open now are dropped (what was sent while silent is
        gone, so they could not be trusted to be in step)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._silent.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _keep(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                sock.close()
                return False
            self._sockets.append(sock)
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            if not self._keep(client):
                return
            if self._silent.is_set() or self.target is None:
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            if not self._keep(upstream):
                return
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass
        client.close()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not self._silent.is_set():
                    sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread on Linux
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
