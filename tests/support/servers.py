"""Real servers and databases for tests: the monolith under gunicorn, seeded database copies."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

BIN = Path(sys.executable).parent
TEST_SETTINGS = "legacy_django.config.django.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: Mapping[str, str], *args: str) -> None:
    """Run a monolith management command; its output is shown only when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "legacy_django", *args], env=dict(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def legacy_env(var_dir: Path, database_url: str, identity_secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": TEST_SETTINGS,
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url,
        "IDENTITY_SECRET": identity_secret,
    }


@contextlib.contextmanager
def serve(command: list[str], env: Mapping[str, str], port: int, log_path: Path) -> Iterator[str]:
    """Run a server process until the block ends; yields its base URL once its port accepts."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port, server, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def legacy_server(env: Mapping[str, str], log_path: Path, *, threads: int = 4) -> Iterator[str]:
    """The monolith under gunicorn (gthread, one worker) on a free port; yields its base URL."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "legacy_django.config.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        "--worker-class=gthread",
        "--workers=1",
        f"--threads={threads}",
        "--no-control-socket",
    ]
    with serve(command, env, port, log_path) as url:
        yield url


@contextlib.contextmanager
def service_server(name: str, env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """One of the new services (``reviews`` or ``recommendations``) under uvicorn on a free port."""
    port = free_port()
    service_env = {**env, f"{name.upper()}_URL": f"http://127.0.0.1:{port}"}
    with serve([sys.executable, "-m", f"services.{name}"], service_env, port, log_path) as url:
        yield url


@contextlib.contextmanager
def recorder_server(log: Path, server_log: Path) -> Iterator[str]:
    """tests/support/recorder.py under uvicorn on a free port, logging each request it gets to ``log``."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.support.recorder:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with serve(command, {**os.environ, "RECORDER_LOG": str(log)}, port, server_log) as url:
        yield url


def _wait_for_port(port: int, server: subprocess.Popen[bytes], log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"server did not start: {log_path.read_text()[-3000:]}") from None
            time.sleep(0.1)


def is_postgres(database_url: str) -> bool:
    return database_url.split("://", 1)[0] in {"postgres", "postgresql"}


def _with_database(database_url: str, name: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def seeded_copies(
    work_dir: Path, names: tuple[str, ...], postgres_url: str | None, identity_secret: str
) -> Iterator[dict[str, str]]:
    """Migrate and seed (small) one database, then give an identical copy per name: {name: DATABASE_URL}.

    SQLite: file copies under ``work_dir``. PostgreSQL: ``CREATE DATABASE … TEMPLATE`` on the
    server ``postgres_url`` points at; the databases are dropped afterwards.
    """
    suffix = f"{os.getpid()}"
    if postgres_url is None:
        seed_url = f"sqlite:///{work_dir / 'seed.sqlite3'}"
    else:
        seed_url = _with_database(postgres_url, f"contract_seed_{suffix}")
    copies = {
        name: (
            f"sqlite:///{work_dir / f'{name}.sqlite3'}"
            if postgres_url is None
            else _with_database(postgres_url, f"contract_{name}_{suffix}")
        )
        for name in names
    }
    admin = None
    if postgres_url is not None:
        admin = psycopg.connect(
            _with_database(postgres_url, "postgres").replace("postgres://", "postgresql://", 1),
            autocommit=True,
        )
        admin.execute(f'CREATE DATABASE "contract_seed_{suffix}"')
    try:
        env = legacy_env(work_dir, seed_url, identity_secret)
        manage(env, "migrate", "-v0")
        manage(env, "seed", "--scale", "small")
        for name, url in copies.items():
            if admin is None:
                with contextlib.closing(sqlite3.connect(work_dir / "seed.sqlite3")) as db:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                shutil.copyfile(work_dir / "seed.sqlite3", work_dir / f"{name}.sqlite3")
            else:
                admin.execute(f'CREATE DATABASE "{urlsplit(url).path[1:]}" TEMPLATE "contract_seed_{suffix}"')
        yield copies
    finally:
        if admin is not None:
            for url in [seed_url, *copies.values()]:
                admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
            admin.close()
