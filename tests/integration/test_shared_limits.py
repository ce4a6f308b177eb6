"""Rate limits and sign-in lock-outs shared by replicas through a real Redis server
(`security.limits_storage`): two API apps, as two replicas behind a load balancer would be, count one
visitor's messages together, concurrent messages are counted atomically, and a lock-out earned on
one replica holds on the other."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.staff import FIRST_LOCK_S, FREE_TRIES, SharedLoginGuard
from chatbot.store import Store, database_url
from chatbot.web.app import create_app
from chatbot.web.security import RateLimiter
from tests.engines import redis_server
from tests.lm_server import free_port

SHOP = "https://shop.example.com"


@pytest.fixture
def redis_url():
    with redis_server() as url:
        yield url


def _replica(settings) -> TestClient:
    manager = build_dialogue_manager(settings, FakeChatModel())
    return TestClient(create_app(manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)))


def test_two_replicas_share_one_visitors_limit(settings, redis_url, monkeypatch):
    monkeypatch.setenv("CHATBOT_SECURITY_SECRET_KEY", "one-secret-for-every-replica")
    settings.security.secret_key = "one-secret-for-every-replica"
    settings.security.visitor_per_minute = 5
    settings.security.limits_storage = redis_url
    shop = Store(database_url("", settings.data_dir)).create_site_key("Shop", [SHOP]).key
    a, b = _replica(settings), _replica(settings)
    token = a.post("/api/session", json={"site_key": shop}, headers={"Origin": SHOP}).json()["token"]
    headers = {"Origin": SHOP, "Authorization": f"Bearer {token}"}
    conversation = a.post("/api/conversations", headers=headers).json()["id"]
    codes = [(a if n % 2 == 0 else b).post(f"/api/conversations/{conversation}/messages", json={"content": "How long does standard delivery take?"},
                                           headers=headers).status_code for n in range(6)]
    assert codes == [200] * 5 + [429]  # each replica alone would have let all six through
    refused = b.post(f"/api/conversations/{conversation}/messages", json={"content": "Hello?"}, headers=headers)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60


def test_concurrent_messages_are_counted_atomically(redis_url):
    replicas = [RateLimiter(10, redis_url, name="api-visitor") for _ in range(2)]  # each with its own connections
    with ThreadPoolExecutor(20) as pool:
        waits = list(pool.map(lambda n: replicas[n % 2].check("visitor-1"), range(20)))
    assert sum(1 for w in waits if w == 0) == 10
    assert all(0 < w <= 60 for w in waits if w)
    import redis

    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]
    assert keys and not any("visitor-1" in k for k in keys)  # the visitor is stored only as a hash


def test_sign_in_lock_outs_hold_across_replicas_and_double(redis_url):
    a, b = SharedLoginGuard(redis_url), SharedLoginGuard(redis_url)  # two replicas' guards
    keys = ("account:owner", "address:203.0.113.9")
    for n in range(FREE_TRIES - 1):
        (a if n % 2 else b).failed(*keys)
    assert a.wait(*keys) == b.wait(*keys) == 0.0  # four failures: no lock-out yet
    a.failed(*keys)
    assert FIRST_LOCK_S - 2 < b.wait(*keys) <= FIRST_LOCK_S  # the fifth, on A, locks B out too
    b.failed(*keys)
    assert 2 * FIRST_LOCK_S - 2 < a.wait(*keys) <= 2 * FIRST_LOCK_S  # each further failure doubles it
    b.succeeded(*keys)
    assert a.wait(*keys) == 0.0
    import redis

    stored = [k.decode() for k in redis.Redis.from_url(redis_url).keys("kefu:sign-in:*")]
    assert not stored  # cleared; and no account name or address is ever a key:
    a.failed(*keys)
    assert all("owner" not in k and "203.0.113" not in k for k in (k.decode() for k in redis.Redis.from_url(redis_url).keys("*")))


def test_sign_in_lock_outs_fall_back_to_this_process_when_redis_is_down(caplog):
    guard = SharedLoginGuard(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    for _ in range(FREE_TRIES):
        guard.failed("account:owner")
    assert guard.wait("account:owner") > 0  # still locked out, by this process's own count
    assert "counted in this process only" in caplog.text
