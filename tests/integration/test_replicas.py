"""Two `chatbot serve` replicas behind nginx on one port (deploy/nginx.conf, its ports replaced),
each with a data dir of its own (two machines), sharing PostgreSQL with pgvector (the store, and the
knowledge's versions and originals: `index.backend: pgvector`), Redis for the rate limits, and the
LM on llama.cpp's own OpenAI-compatible server. Started together on a new database; then the API's
guarantees are checked through nginx and on each replica."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from chatbot.config import load_settings
from chatbot.index_store import libpq_url
from chatbot.store import Store
from chatbot.weights import resolve_gguf
from tests.integration.conftest import clean_env, run_cli, start_server, wait_healthy
from tests.engines import nginx_server, redis_server, stop
from tests.lm_server import llama_server
from tests.postgres import postgres_server

pytestmark = pytest.mark.slow

SHOP = "https://shop.example.com"
FAQ = "How long does standard delivery take?"
GENERATED = "My kettle arrived this morning with a cracked lid. How long do I have to report it?"


@dataclass
class Cluster:
    url: str  # nginx
    a: str
    b: str
    replica_a: subprocess.Popen
    data_dir_a: Path
    env: dict
    site_key: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    settings = load_settings("default", environ=clean_env())
    gguf = resolve_gguf(settings.llm.model, settings.model_cache_dir)
    with (redis_server() as redis_url, postgres_server(pgvector=True) as database,
          llama_server(gguf, "kefu-lm", 1, settings.llm.context_tokens) as lm):
        # No signing key is configured: the replicas share the one the database keeps.
        env = {"CHATBOT_DATABASE_URL": database, "CHATBOT_SECURITY_LIMITS_STORAGE": redis_url,
               "CHATBOT_SECURITY_VISITOR_PER_MINUTE": "5", "CHATBOT_LLM_BACKEND": "openai", "CHATBOT_LLM_BASE_URL": lm.base_url,
               "CHATBOT_LLM_MODEL": "kefu-lm", "CHATBOT_KB_RELOAD_INTERVAL_S": "1", "CHATBOT_INDEX_BACKEND": "pgvector"}
        # Both replicas start together on a new database: one builds the index and the store's
        # tables, the other waits for them and uses them.
        with replicas_behind_nginx(tmp, env, "a", "b") as (url, (a, url_a), (_, url_b)):
            yield Cluster(url, url_a, url_b, a, tmp / "a", env, Store(database).create_site_key("Shop", [SHOP]).key)


@contextlib.contextmanager
def replicas_behind_nginx(tmp: Path, env: dict, *names: str):
    """`chatbot serve` replicas started together, each on the data dir `tmp / name`, behind an nginx
    of their own once all are healthy: (nginx's URL, (process, URL) of each); stopped after."""
    started = [start_server(tmp / name, tmp / f"{name}.log", env, wait=False) for name in names]
    try:
        for name, (proc, url) in zip(names, started):
            wait_healthy(proc, url, tmp / f"{name}.log")
        with nginx_server([url for _, url in started]) as url:
            yield url, *started
    finally:
        for proc, _ in started:
            stop(proc)


def _session(url: str, site_key: str) -> dict:
    reply = httpx.post(f"{url}/api/session", json={"site_key": site_key}, headers={"Origin": SHOP}, timeout=30)
    assert reply.status_code == 200, reply.text
    return {"Origin": SHOP, "Authorization": f"Bearer {reply.json()['token']}"}


def _conversation(url: str, headers: dict) -> str:
    reply = httpx.post(f"{url}/api/conversations", headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def _ask(url: str, conversation: str, headers: dict, question: str, timeout: float = 120) -> tuple[int, list[tuple[float, str, dict]]]:
    """The status and the server-sent events of one message, each with the second it arrived."""
    events, started = [], time.perf_counter()
    with httpx.stream("POST", f"{url}/api/conversations/{conversation}/messages", json={"content": question}, headers=headers, timeout=timeout) as reply:
        if reply.status_code != 200:
            reply.read()
            return reply.status_code, []
        name = ""
        for line in reply.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((time.perf_counter() - started, name, json.loads(line.removeprefix("data: "))))
    return 200, events


def test_both_replicas_started_together_on_one_new_database(cluster):
    for url in (cluster.a, cluster.b):
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    with psycopg.connect(libpq_url(cluster.env["CHATBOT_DATABASE_URL"])) as conn:
        versions = conn.execute("SELECT count(*) FROM kb_versions").fetchone()[0]
    assert versions == 1  # the knowledge was built once, not once per replica
    assert not (cluster.data_dir_a / "index").exists()  # and not on a replica's disk


def test_the_answer_streams_token_by_token_through_nginx(cluster):
    headers = _session(cluster.url, cluster.site_key)
    status, events = _ask(cluster.url, _conversation(cluster.url, headers), headers, GENERATED)
    assert status == 200
    tokens = [t for t, name, _ in events if name == "token"]
    done = [data for _, name, data in events if name == "done"]
    assert done and done[0]["mode"] == "generate"
    # The quote streams at once and the LM's checked sentence after it is generated: a proxy that
    # buffered the stream would hand both over together at the end.
    assert len(tokens) >= 2 and tokens[0] < tokens[-1] - 0.5, tokens


def test_a_visitors_limit_holds_across_both_replicas(cluster):
    headers = _session(cluster.url, cluster.site_key)
    conversation = _conversation(cluster.a, headers)
    codes = [_ask(url, conversation, headers, FAQ)[0] for url in [cluster.a, cluster.b] * 3]
    assert codes == [200] * 5 + [429]  # each replica alone would count three
    crowd = _session(cluster.url, cluster.site_key)  # another visitor: 20 messages at once through nginx
    crowded = _conversation(cluster.url, crowd)
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _ask(cluster.url, crowded, crowd, FAQ)[0], range(20)))
    assert sorted(codes) == [200] * 5 + [429] * 15


def test_twenty_messages_at_once_under_a_limit_of_ten_let_exactly_ten_through(cluster, tmp_path):
    # Two more replicas on the same database, Redis and LM server, with a visitor's limit of 10,
    # behind an nginx of their own (a limit of another size is counted apart: `limits` keys it).
    with replicas_behind_nginx(tmp_path, cluster.env | {"CHATBOT_SECURITY_VISITOR_PER_MINUTE": "10"}, "c", "d") as (url, *_):
        headers = _session(url, cluster.site_key)
        conversation = _conversation(url, headers)
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: _ask(url, conversation, headers, FAQ)[0], range(20)))
    assert sorted(codes) == [200] * 10 + [429] * 10


def test_a_conversation_started_on_one_replica_goes_on_on_the_other(cluster):
    headers = _session(cluster.a, cluster.site_key)
    conversation = _conversation(cluster.a, headers)
    assert _ask(cluster.a, conversation, headers, FAQ)[0] == 200
    status, events = _ask(cluster.b, conversation, headers, "And how much does it cost?")
    assert status == 200 and events[-1][2]["mode"] != "abstain"  # read with the first question, which B did not see
    history = httpx.get(f"{cluster.b}/api/conversations/{conversation}", headers=headers, timeout=30).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"] and history[0]["content"] == FAQ


def test_a_document_added_through_one_replica_is_cited_by_both_until_removed(cluster, tmp_path):
    document = tmp_path / "gift-wrapping.md"
    document.write_text("# Gift wrapping\n\nLumen & Leaf wraps any order in recycled kraft paper for USD 3.50 per parcel.\n")
    question = "Do you offer gift wrapping, and what does it cost?"
    assert run_cli("kb", "add", str(document), data_dir=cluster.data_dir_a, env=cluster.env).returncode == 0  # on A's machine
    for url in (cluster.b, cluster.a):  # each replica's next turn, without a restart
        headers = _session(url, cluster.site_key)
        _, events = _ask(url, _conversation(url, headers), headers, question)
        assert any(s["source"] == "gift-wrapping.md" for s in events[-1][2]["sources"]), events[-1]
    assert run_cli("kb", "remove", "gift-wrapping.md", data_dir=cluster.data_dir_a, env=cluster.env).returncode == 0
    for url in (cluster.a, cluster.b, cluster.url, cluster.url):
        headers = _session(url, cluster.site_key)
        _, events = _ask(url, _conversation(url, headers), headers, question)
        assert all(s["source"] != "gift-wrapping.md" for s in events[-1][2].get("sources", [])), events[-1]


def test_with_one_replica_killed_mid_answer_the_other_serves_and_nothing_stored_is_lost(cluster):
    headers = _session(cluster.url, cluster.site_key)
    conversation = _conversation(cluster.url, headers)
    assert _ask(cluster.url, conversation, headers, FAQ)[0] == 200
    with httpx.stream("POST", f"{cluster.a}/api/conversations/{conversation}/messages", json={"content": GENERATED}, headers=headers, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("event: token"):
                os.kill(cluster.replica_a.pid, signal.SIGKILL)  # mid-answer
                break
    cluster.replica_a.wait(10)
    codes = [_ask(cluster.url, conversation, headers, FAQ)[0] for _ in range(3)]
    assert codes == [200, 200, 200]  # B answers every one
    history = httpx.get(f"{cluster.url}/api/conversations/{conversation}", headers=headers, timeout=30).json()["messages"]
    asked = [m["content"] for m in history if m["role"] == "user"]
    assert asked == [FAQ, GENERATED, FAQ, FAQ, FAQ]  # the message A took before it died is stored too
    assert sum(1 for m in history if m["role"] == "assistant") >= 4  # and every answer given
