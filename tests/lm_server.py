"""llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`, from
llama-cpp-python[server]) on a free local port, for the tests and benchmarks of `llm.backend: openai`."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class LMServer:
    base_url: str  # what `llm.base_url` is set to: http://127.0.0.1:<port>/v1
    process: subprocess.Popen
    log: Path  # the server's own output

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(server: LMServer, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama.cpp's server exited with {server.process.returncode}: {server.output()[-2000:]}; "
                               "is llama-cpp-python[server] installed (`make install` does it)?")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/models", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"llama.cpp's server did not answer within {timeout_s:.0f} s: {server.output()[-2000:]}")


@contextlib.contextmanager
def llama_server(model: Path, alias: str, threads: int, context_tokens: int, port: int | None = None, wait: bool = True,
                 extra: tuple[str, ...] = ()) -> Iterator[LMServer]:
    """The server with the GGUF at `model` (named `alias` to clients; `extra`: more of its
    options), stopped on leaving; `wait=False` returns as soon as it is started, before it answers."""
    port = port or free_port()
    log = Path(tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False).name)
    command = [sys.executable, "-u", "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias, "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(context_tokens), "--n_threads", str(threads), "--verbose", "False", *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = LMServer(f"http://127.0.0.1:{port}/v1", process, log)
    try:
        if wait:
            wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.unlink(missing_ok=True)
