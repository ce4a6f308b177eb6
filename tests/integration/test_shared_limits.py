"""Rate limits shared by replicas through a real Redis server (`security.limits_storage`): two API
apps, as two replicas behind a load balancer would be, count one visitor's messages together, and
concurrent messages are counted atomically."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.store import Store, database_url
from chatbot.web.app import create_app
from chatbot.web.security import RateLimiter
from tests.engines import redis_server

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
