"""The answer set through the OpenAI-compatible backend, served by llama.cpp's own server.

    .venv/bin/pip install sse-starlette starlette-context pydantic-settings   # llama-cpp-python[server]'s extras, once
    .venv/bin/python bench/answers_openai.py [--model packaged:qwen2.5-coder-0.5b] [--answers bench/answers.jsonl] [--out FILE]

Starts `python -m llama_cpp.server` on a free local port with the packaged GGUF (the same weights
and threads as the in-process default), points `llm.backend: openai` at it, runs `chatbot eval
--answers` through the live dialogue manager, and prints the report's figures as one JSON line.
The difference from the in-process llama.cpp backend is what an OpenAI-compatible server gets: the
prompt, without the grammar that holds a yes/no answer to its verdict openings (`llm.py`), so
the instruction alone asks for them. Not a test: the backend table in docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.evaluation import run_answer_eval
from chatbot.weights import resolve_gguf

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, server: subprocess.Popen, log: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp's server exited with {server.returncode} (its output: {log}); is llama-cpp-python[server] installed? (see the top of {Path(__file__).name})")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"llama.cpp's server did not answer within {timeout_s:.0f} s (its output: {log})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="packaged:qwen2.5-coder-0.5b")
    parser.add_argument("--answers", type=Path, default=HERE / "answers.jsonl")
    parser.add_argument("--out", type=Path, help="also write the whole report (with the wrong answers) here")
    args = parser.parse_args()
    settings = load_settings()
    path = resolve_gguf(args.model, settings.model_cache_dir)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    threads = str(settings.llm.threads or os.cpu_count() or 1)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", args.model, "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(settings.llm.context_tokens), "--n_threads", threads, "--verbose", "False"]
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(base_url, server, log.name)
        served = load_settings(overrides={"llm.backend": "openai", "llm.base_url": base_url, "llm.model": args.model})
        report = run_answer_eval(served, args.answers, progress=False)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "wrong"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
