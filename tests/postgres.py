"""A PostgreSQL server of its own in a temporary folder, for the tests that run the store or the
knowledge on it. Debian's PostgreSQL has no pgvector package, so a server with pgvector is the one
the `pgserver` wheel bundles (PostgreSQL 16 with pgvector 0.6.2; the test extra installs it).
PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (Debian's packages
make it)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.lm_server import free_port


def _tool(name: str, pgvector: bool = False) -> str:
    if pgvector:
        try:
            import pgserver
        except ImportError as e:
            raise RuntimeError("PostgreSQL with pgvector comes from the pgserver wheel: `make test` installs it (pip install -e '.[test]')") from e
        return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: `make test` installs Debian's postgresql package")
    return found


@contextlib.contextmanager
def postgres_server(pgvector: bool = False) -> Iterator[str]:
    """Start a new cluster on a free local port (with the pgvector extension available when asked);
    yields its SQLAlchemy URL; stops and removes it."""
    initdb, pg_ctl = _tool("initdb", pgvector), _tool("pg_ctl", pgvector)
    folder = Path(tempfile.mkdtemp(prefix="kefu-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")

    try:
        run(initdb, "-D", str(data), "-U", "kefu", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "start",
            "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off")
        try:
            yield f"postgresql+psycopg://kefu@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
