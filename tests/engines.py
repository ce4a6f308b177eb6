"""Redis and nginx started for a test or a benchmark on free local ports (Debian's packages, which
`make test` installs), each stopped on leaving."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.lm_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis server of its own (no persistence); yields its URL."""
    server = shutil.which("redis-server")
    if not server:
        raise RuntimeError("redis-server is missing: `make test` installs Debian's redis-server package")
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kefu-redis-") as folder:
        process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        break
                time.sleep(0.05)
            else:
                raise RuntimeError("redis-server did not answer within 5 s")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)


@contextlib.contextmanager
def nginx_server(replicas: list[str]) -> Iterator[str]:
    """nginx with deploy/nginx.conf in front of `replicas` (their URLs; the file's two upstream
    servers become these); yields its URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise RuntimeError("nginx is missing: `make test` installs Debian's nginx-light package")
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text().replace("listen 8080;", f"listen 127.0.0.1:{port};")
    for upstream in ("kefu_api", "kefu_pages"):  # the file's example servers, replaced by these replicas
        head = site.index(f"upstream {upstream} {{")
        body = site[head : site.index("}", head)]
        lines = [line for line in body.splitlines() if "server 127.0.0.1:800" not in line]
        servers = [f"    server {r.removeprefix('http://')} max_fails=1 fail_timeout=10s;" for r in replicas]
        site = site.replace(body, "\n".join([lines[0], *servers, *lines[1:]]))
    with tempfile.TemporaryDirectory(prefix="kefu-nginx-") as folder:
        tmp = Path(folder)
        config = tmp / "nginx.conf"
        config.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/body;
    uwsgi_temp_path {tmp}/body;
    scgi_temp_path {tmp}/body;
{site}
}}
""")
        check = subprocess.run([nginx, "-t", "-c", str(config), "-p", str(tmp)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused deploy/nginx.conf: {check.stderr}")
        process = subprocess.Popen([nginx, "-c", str(config), "-p", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"{url}/healthz", timeout=2)
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"nginx did not answer: {(tmp / 'error.log').read_text()}")
            yield url
        finally:
            stop(process)
