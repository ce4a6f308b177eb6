"""Load: many concurrent conversations streaming over HTTP against a real `chatbot serve` (default
profile, its own data dir), FAQ-path and generated answers mixed, for a fixed time. Each simulated
customer asks, reads the streamed answer to the end, "types" for a few seconds and asks again.
Prints messages, errors, time to first token (p50/p95, per answer kind), and checks that every
message sent is in the database afterwards.

With `--replicas N` the same customers talk to N `chatbot serve` replicas behind nginx
(deploy/nginx.conf), sharing PostgreSQL with pgvector (the store and the knowledge), Redis and one
data dir (caches), with the LM on llama.cpp's own
server (its `--parallel`-free default: one answer at a time), as `tests/integration/test_replicas.py` runs them.

    .venv/bin/python bench/load.py [--users 50] [--minutes 5] [--replicas N] [--set llm.threads=1 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.engines import nginx_server, redis_server  # noqa: E402
from tests.lm_server import llama_server  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

ORIGIN = "https://shop.example.com"
FAQ = [
    "How long does standard delivery take?", "What payment methods do you accept?", "Can I return an item I have already opened?",
    "标准快递多久能送到？", "如何重置密码？", "How do gift cards work?", "Do you ship abroad?",
]
# Questions the default profile answers with the LM (checked with its decision rule), and one it abstains on.
GENERATED = [
    "How long is the warranty on a toaster?", "我的咖啡机坏了，保修几年？", "Do you deliver on Sundays?",
    "Does the warranty cover water damage?", "包裹丢了怎么办？", "Do you sell furniture?",
]


BUSY = ("We are answering many customers right now", "现在咨询的客户很多")  # prompts/busy.j2
UNCHECKED = ("That is our information word for word. If it does not", "以上是资料的原文。如果它没有")  # prompts/unchecked.j2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--think", type=float, nargs=2, default=(5.0, 10.0), metavar=("MIN", "MAX"), help="seconds between a reply and the next question")
    parser.add_argument("--replicas", type=int, default=0, help="N replicas behind nginx with PostgreSQL, Redis and llama.cpp's server (0: one process, the LM in it)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for the server, e.g. llm.threads=1")
    args = parser.parse_args()
    settings = {"CHATBOT_" + key.replace(".", "_").upper(): value for key, value in (kv.split("=", 1) for kv in args.set)}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as engines:
        data = Path(tmp)
        # All simulated customers come from one address; real ones each have their own, so the
        # per-address limit on new visitor tokens (30 a minute) is raised for this run only.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")} | {"CHATBOT_DATA_DIR": str(data), "CHATBOT_SECURITY_SESSIONS_PER_MINUTE": "1000"} | settings
        if args.replicas:
            env |= _shared_engines(engines, env)
        site_key = subprocess.run([sys.executable, "-m", "chatbot.cli", "sitekey", "add", "Load test", "--origin", ORIGIN], env=env, capture_output=True, text=True, check=True).stdout.strip()
        servers, urls = [], []
        for n in range(max(1, args.replicas)):
            port = _free_port()
            log = (data / f"serve-{n}.log").open("w")
            servers.append(subprocess.Popen([sys.executable, "-m", "chatbot.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for url, server in zip(urls, servers, strict=True):
                _wait_healthy(url, server)
            url = engines.enter_context(nginx_server(urls)) if args.replicas else urls[0]
            results = asyncio.run(_run(url, site_key, args.users, args.minutes * 60, tuple(args.think)))
        finally:
            for server in servers:
                server.terminate()
                server.wait(60)
        _report(results, env.get("CHATBOT_DATABASE_URL", ""), data, args)


def _shared_engines(engines: contextlib.ExitStack, env: dict) -> dict:
    """PostgreSQL with pgvector (the store, the knowledge, the signing key), Redis and llama.cpp's
    server for the replicas: the settings that point at them."""
    from chatbot.config import load_settings
    from chatbot.weights import resolve_gguf

    settings = load_settings("default", environ=env)
    gguf = resolve_gguf(settings.llm.model, settings.model_cache_dir)
    lm = engines.enter_context(llama_server(gguf, "kefu-lm", settings.llm.threads or os.cpu_count() or 1, settings.llm.context_tokens))
    return {"CHATBOT_DATABASE_URL": engines.enter_context(postgres_server(pgvector=True)), "CHATBOT_INDEX_BACKEND": "pgvector",
            "CHATBOT_SECURITY_LIMITS_STORAGE": engines.enter_context(redis_server()), "CHATBOT_LLM_BACKEND": "openai", "CHATBOT_LLM_BASE_URL": lm.base_url,
            "CHATBOT_LLM_MODEL": "kefu-lm"}


async def _run(url: str, site_key: str, users: int, seconds: float, think: tuple[float, float]) -> list[dict]:
    limits = httpx.Limits(max_connections=users + 10, max_keepalive_connections=users + 10)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0), limits=limits) as client:
        deadline = time.monotonic() + seconds
        per_user = await asyncio.gather(*(_customer(client, site_key, n, deadline, think) for n in range(users)))
    return [r for rs in per_user for r in rs]


async def _customer(client: httpx.AsyncClient, site_key: str, n: int, deadline: float, think: tuple[float, float]) -> list[dict]:
    rng = random.Random(n)
    results: list[dict] = []
    await asyncio.sleep(rng.uniform(0, think[1]))  # customers arrive spread out
    session = await client.post("/api/session", json={"site_key": site_key}, headers={"Origin": ORIGIN})
    if session.status_code != 200:
        return [{"conversation": None, "kind": "session", "error": f"session: HTTP {session.status_code} {session.text[:200]}", "first_token_s": None, "mode": None}]
    token = session.json()["token"]
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {token}"}
    conversation = (await client.post("/api/conversations", headers=headers)).json()["id"]
    while time.monotonic() < deadline:
        kind = rng.choice(["faq", "generated"])
        question = rng.choice(FAQ if kind == "faq" else GENERATED)
        started = time.monotonic()
        result = {"conversation": conversation, "kind": kind, "error": None, "first_token_s": None, "mode": None}
        try:
            async with client.stream("POST", f"/api/conversations/{conversation}/messages", json={"content": question}, headers=headers) as response:
                if response.status_code != 200:
                    result["error"] = f"HTTP {response.status_code}: {(await response.aread()).decode()[:200]}"
                else:
                    event, text = None, ""
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "token":
                            if result["first_token_s"] is None:
                                result["first_token_s"] = time.monotonic() - started
                            text += json.loads(line[6:])["text"]
                        elif line.startswith("data: ") and event == "done":
                            result["mode"] = json.loads(line[6:])["mode"]
                    if result["mode"] == "generate" and any(b in text for b in BUSY):  # no model context free within llm.max_wait_s
                        result["mode"] = "generate, busy: the quote alone"
                    elif result["mode"] == "generate" and any(u in text for u in UNCHECKED):  # the LM's sentence failed a check
                        result["mode"] = "generate, not shown: the quotes"
                    if result["mode"] is None:
                        result["error"] = "the stream ended without a done event"
        except httpx.HTTPError as e:
            result["error"] = f"{type(e).__name__}: {e}"
        result["total_s"] = time.monotonic() - started
        results.append(result)
        await asyncio.sleep(rng.uniform(*think))
    return results


def _report(results: list[dict], database: str, data: Path, args: argparse.Namespace) -> None:
    from chatbot.store import Store, database_url

    errors = [r for r in results if r["error"]]
    shape = f"{args.replicas} replicas behind nginx" if args.replicas else "one process"
    print(f"{args.users} concurrent conversations for {args.minutes:g} min, {shape}: {len(results)} messages answered, {len(errors)} errors")
    for e in errors[:5]:
        print("  error:", e["error"])
    for label, chosen in (("all", results), *((f"mode {m}", [r for r in results if r["mode"] == m]) for m in ("faq", "generate", "generate, not shown: the quotes", "generate, busy: the quote alone", "abstain"))):
        ttft = sorted(r["first_token_s"] for r in chosen if r["first_token_s"] is not None)
        whole = sorted(r["total_s"] for r in chosen if r["first_token_s"] is not None)
        if ttft:
            print(f"  {label}: n={len(ttft)}, first token p50 {_pct(ttft, 50):.2f} s, p95 {_pct(ttft, 95):.2f} s, max {ttft[-1]:.2f} s;"
                  f" whole answer p50 {_pct(whole, 50):.2f} s, p95 {_pct(whole, 95):.2f} s")
    modes: dict[str, int] = {}
    for r in results:
        modes[r["mode"] or "none"] = modes.get(r["mode"] or "none", 0) + 1
    print(f"  modes: {modes}")
    store = Store(database_url(database, data))
    missing = 0
    for conversation in {r["conversation"] for r in results if r["conversation"]}:
        sent = sum(1 for r in results if r["conversation"] == conversation)
        stored = store.messages(conversation)
        questions = sum(1 for m in stored if m.role == "user")
        answers = sum(1 for m in stored if m.role == "assistant")
        missing += max(0, sent - questions) + max(0, sent - answers)
    print(f"  database: every message stored: {'yes' if missing == 0 else f'NO, {missing} missing'}")


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server stopped while starting; see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(1)
    raise SystemExit("the server did not become healthy in 300 s")


if __name__ == "__main__":
    main()
