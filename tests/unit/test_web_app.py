"""The web app in-process on fakes: health, and the admin page off without a password, behind one with."""

import pytest
from fastapi.testclient import TestClient

from chatbot.embeddings import FakeEmbeddings
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.runtime import IndexWatcher, build_dialogue_manager
from chatbot.web.app import create_app


@pytest.fixture
def app_for(settings):
    def make(password: str = ""):
        settings.admin.password = password
        manager = build_dialogue_manager(settings, FakeChatModel())
        return TestClient(create_app(manager, IndexWatcher(KnowledgeBase(settings, FakeEmbeddings()), manager)))

    return make


def test_health_names_the_live_index(app_for, settings):
    body = app_for().get("/healthz").json()
    assert body["status"] == "ok" and body["chunks"] > 0 and body["index_version"]


def test_without_a_password_the_admin_page_is_off_and_says_how_to_turn_it_on(app_for):
    page = app_for().get("/admin")
    assert page.status_code == 200 and "The admin page is off" in page.text and "CHATBOT_ADMIN_PASSWORD" in page.text


def test_with_a_password_the_admin_page_asks_for_it(app_for):
    client = app_for("s3cret-for-tests")
    assert client.get("/admin/config").status_code == 401
    assert client.post("/admin/login", data={"username": "admin", "password": "wrong"}).status_code == 400
    assert client.post("/admin/login", data={"username": "admin", "password": "s3cret-for-tests"}).status_code == 200
    assert client.get("/admin/config").status_code == 200


def test_text_anyone_wrote_is_escaped_for_the_chat_page_and_the_admin_reports():
    from chatbot.kb import Report
    from chatbot.web.admin import report_markdown
    from chatbot.web.chat_ui import as_text

    assert as_text('<img src=x onerror="alert(1)">') == '&lt;img src=x onerror="alert(1)"&gt;'
    report = Report(refused=["<script>x</script>.md: the file is empty"], version="v1")
    assert "<script>" not in report_markdown(report) and "&lt;script&gt;" in report_markdown(report)
