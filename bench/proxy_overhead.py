"""What a proxy costs, as a ratio to nginx measured in the same run.

    .venv/bin/python bench/proxy_overhead.py [--duration 8] [--connections 64] [--big]

One nginx (1 worker) serves a ~1 KB JSON (and, for --big, a 1 MB body) plus a static JWKS.
Measured with wrk (2 threads): the backend directly; nginx proxy_pass with keep-alive (1 worker);
our gateway with 1 worker and with 2, on a route that requires a JWT (RS256, cached after the first
request) and takes a flag decision. Reported: req/s, p50/p99, CPU µs per request of the proxy's
processes (from /proc), and the ratio to nginx proxy_pass. Also p50 at light load (4 connections),
to show the latency a proxy adds. Writes bench/results/proxy_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt
import psutil
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bench._support import Needs, free_port, require, server_process, write_result, wrk
from flags import default_flags, route_ids
from flags.routes_file import SHIPPED_ROUTES_FILE

NEEDS = Needs(executables=("nginx", "wrk"))
PATH = "/api/v1/reviews/items/1"  # a route that requires a JWT and takes a flag decision
BODY = json.dumps({"items": [{"id": n, "name": f"item {n}", "price": 1000 + n} for n in range(22)]})
ROUTES = """
default_cluster = "legacy"
default_auth = "optional"
[clusters.legacy]
url = "http://127.0.0.1:1"
max_in_flight = 4096
max_connections = 256
[clusters.reviews]
url = "http://127.0.0.1:1"
max_in_flight = 4096
max_connections = 256
[[routes]]
id = "reviews.list"
methods = ["GET"]
path = "/api/v1/reviews/items/{item_id}"
candidate = "reviews"
auth = "required"
"""


def nginx_conf(work: Path, backend: int, proxy: int) -> Path:
    (work / "big.bin").write_bytes(b"x" * 1_000_000)
    conf = f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/scratch; proxy_temp_path {work}/scratch; fastcgi_temp_path {work}/scratch;
  uwsgi_temp_path {work}/scratch; scgi_temp_path {work}/scratch;
  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{backend};
    location = /.well-known/jwks.json {{ default_type application/json; alias {work}/jwks.json; }}
    location = /big {{ default_type application/octet-stream; alias {work}/big.bin; }}
    location / {{ default_type application/json; return 200 '{BODY}'; }}
  }}
  server {{
    listen 127.0.0.1:{proxy};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    (work / "scratch").mkdir(exist_ok=True)
    # nginx's worker runs as an unprivileged user: let it read the files it serves.
    for item in (work, work / "jwks.json", work / "big.bin"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    path = work / "nginx.conf"
    path.write_text(conf)
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def measure(url: str, pid: int, duration: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    before = cpu_seconds(pid)
    result = wrk(url, duration=duration, connections=connections, headers=headers, threads=2)
    used = cpu_seconds(pid) - before
    requests = result["rps"] * duration
    result["cpu_us_per_request"] = used / requests * 1e6 if requests else float("nan")
    result["rss_mb"] = (
        sum(p.memory_info().rss for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)])
        / 1e6
    )
    return result


def prepare(work: Path) -> dict[str, str]:
    """Signing key and JWKS, flags (route.reviews.list on) and the route table under ``work``; returns
    the Authorization header of a valid token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    (work / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "bench", "alg": "RS256", "use": "sig"}]})
    )
    now = int(time.time())
    token = jwt.encode(
        {"sub": "1", "iat": now, "exp": now + 3600, "iss": "shop-legacy", "aud": "shop-api", "scope": "user"},
        key,
        algorithm="RS256",
        headers={"kid": "bench"},
    )
    flags = default_flags(route_ids(SHIPPED_ROUTES_FILE))
    for feature in flags["features"]:
        feature["enabled"] = feature["name"] == "route.reviews.list"
    (work / "flags.json").write_text(json.dumps(flags))
    (work / "routes.toml").write_text(ROUTES)
    return {"Authorization": f"Bearer {token}"}


def gateway_env(work: Path, port: int, workers: int, backend_url: str) -> dict[str, str]:
    """The environment of a gateway on ``port`` in front of the nginx backend, with files under ``work``."""
    return {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": str(workers),
        "LEGACY_URL": backend_url,
        "REVIEWS_URL": backend_url,
        "JWT_JWKS_URL": f"{backend_url}/.well-known/jwks.json",
        "ROUTES_FILE": str(work / "routes.toml"),
        "FLAGS_FILE": str(work / "flags.json"),
        "OVERRIDES_FILE": str(work / "overrides.json"),
        "REDIS_URL": "",
        "UNLEASH_URL": "",
        "VAR_DIR": str(work),
    }


def light_p50(url: str, duration: int, headers: dict[str, str]) -> float:
    """p50 in ms at light load (4 connections, 1 wrk thread): the latency a proxy adds."""
    return wrk(url, duration=max(2, duration // 2), connections=4, headers=headers)["p50_ms"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--big", action="store_true", help="also 1 MB bodies and 1,024 connections")
    options = parser.parse_args()
    require(NEEDS)
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    auth = prepare(work)
    backend, proxy = free_port(), free_port()
    conf = nginx_conf(work, backend, proxy)
    path = PATH
    rows: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        _, nginx_pid = stack.enter_context(
            server_process(["nginx", "-c", str(conf)], dict(os.environ), backend)
        )
        direct = f"http://127.0.0.1:{backend}"
        rows["backend direct (nginx)"] = measure(
            f"{direct}{path}", nginx_pid, options.duration, options.connections, auth
        )
        rows["nginx proxy_pass"] = measure(
            f"http://127.0.0.1:{proxy}{path}", nginx_pid, options.duration, options.connections, auth
        )
        for workers in (1, 2):
            port = free_port()
            env = gateway_env(work, port, workers, direct)
            with server_process([sys.executable, "-m", "gateway"], env, port) as (url, pid):
                row = measure(f"{url}{path}", pid, options.duration, options.connections, auth)
                row["p50_ms_light"] = light_p50(f"{url}{path}", options.duration, auth)
                rows[f"gateway, {workers} worker{'s' if workers > 1 else ''}"] = row
                if options.big and workers == 1:
                    rows["gateway, 1 worker, 1 MB body"] = measure(
                        f"{url}/big", pid, options.duration, 16, auth
                    )
                    rows["gateway, 1 worker, 1,024 connections"] = measure(
                        f"{url}{path}", pid, options.duration, 1024, auth
                    )
        rows["nginx proxy_pass"]["p50_ms_light"] = light_p50(
            f"http://127.0.0.1:{proxy}{path}", options.duration, auth
        )
        if options.big:
            rows["nginx proxy_pass, 1 MB body"] = measure(
                f"http://127.0.0.1:{proxy}/big", nginx_pid, options.duration, 16, auth
            )
    failed = {name: row["non_2xx"] for name, row in rows.items() if row["non_2xx"]}
    if failed:
        print(f"error: non-2xx answers, the numbers are void: {failed}", file=sys.stderr)
        return 1
    baseline = rows["nginx proxy_pass"]["rps"]
    print(f"{'setup':<38}{'req/s':>9}{'x nginx':>9}{'p50 ms':>8}{'p99 ms':>8}{'CPU µs/req':>12}{'RSS MB':>8}")
    for name, row in rows.items():
        row["ratio_to_nginx_proxy"] = row["rps"] / baseline
        print(
            f"{name:<38}{row['rps']:>9.0f}{row['ratio_to_nginx_proxy']:>9.2f}{row['p50_ms']:>8.2f}"
            f"{row['p99_ms']:>8.2f}{row['cpu_us_per_request']:>12.1f}{row['rss_mb']:>8.0f}"
        )
    added = rows["gateway, 1 worker"]["p50_ms_light"] - rows["nginx proxy_pass"]["p50_ms_light"]
    print(
        f"p50 at 4 connections: gateway {rows['gateway, 1 worker']['p50_ms_light']:.2f} ms, "
        f"nginx proxy {rows['nginx proxy_pass']['p50_ms_light']:.2f} ms (gateway adds {added:.2f} ms)"
    )
    write_result("proxy_overhead", {"settings": vars(options), "rows": rows, "added_p50_ms_light": added})
    return 0


if __name__ == "__main__":
    sys.exit(main())
