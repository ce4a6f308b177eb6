"""Every API operation of `/openapi.json` fuzzed with schemathesis (property-based, bounded): bodies,
query and path values generated from the schema and beyond it (broken JSON, wrong types, odd Unicode,
lone surrogates), sent with a valid visitor token and origin so that the requests get past the door.
No answer may be a 5xx."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from schemathesis import GenerationMode
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.store import Store, database_url
from chatbot.web.app import create_app

SHOP = "https://shop.example.com"
EXAMPLES_PER_OPERATION = 60


@pytest.fixture
def app(settings):
    settings.security.visitor_per_minute = 10_000  # past the rate limits, into the code behind them
    settings.security.site_per_minute = 100_000
    settings.security.sessions_per_minute = 100_000
    manager = build_dialogue_manager(settings, FakeChatModel())
    app = create_app(manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager))
    app.state.site_key = Store(database_url("", settings.data_dir)).create_site_key("Shop", [SHOP]).key
    return app


def test_no_request_the_fuzzer_makes_gets_a_5xx(app, capsys):
    client = TestClient(app)
    token = client.post("/api/session", json={"site_key": app.state.site_key}, headers={"Origin": SHOP}).json()["token"]
    headers = {"Origin": SHOP, "Authorization": f"Bearer {token}"}
    conversation = client.post("/api/conversations", headers=headers).json()["id"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation, mode in [(o, m) for o in operations for m in GenerationMode]:  # valid inputs, then invalid ones

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def send(case):
            if "conversation_id" in (case.path_parameters or {}) and sum(statuses.values()) % 2:
                case.path_parameters["conversation_id"] = conversation  # half the time a real one
            if operation.path == "/api/session" and isinstance(case.body, dict) and sum(statuses.values()) % 3 == 0:
                case.body["site_key"] = app.state.site_key
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{operation.method.upper()} {operation.path}: {response.status_code} for {case.body!r:.200}")

        try:
            send()
        except Unsatisfiable:  # no invalid input exists for an operation without parameters
            assert mode is GenerationMode.NEGATIVE

    with capsys.disabled():
        print(f"\nschemathesis: {sum(statuses.values())} requests over {len(operations)} operations; statuses {dict(sorted(statuses.items()))}")
    assert not failures, failures[:5]
    assert sum(statuses.values()) >= 4 * len(operations)
