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
    moved = client.get("/admin", follow_redirects=False)  # the address start-up prints and the README gives
    assert moved.status_code == 307 and moved.headers["location"] == "/admin/"
    assert client.get("/admin").status_code == 200
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


def test_an_upload_that_changed_nothing_says_so_and_not_that_a_new_version_is_live():
    from chatbot.kb import Report
    from chatbot.web.admin import report_markdown

    refused = report_markdown(Report(refused=["broken.pdf: not a readable PDF; export it again"], version="v7"))
    assert "Nothing changed: index version `v7` is still live" in refused and "Mend the refused files" in refused
    assert "is live (" not in refused
    added = report_markdown(Report(added=[{"name": "faq.md", "chunks": 3}], version="v8", embedded_chunks=3, seconds=1.5))
    assert "Index version `v8` is live (3 chunks embedded in 1.5 s)" in added and "Nothing changed" not in added


def test_a_generated_answer_shows_its_quote_as_one_and_marks_the_words_in_its_source():
    from chatbot.dialogue import Reply, Source
    from chatbot.web.chat_ui import answer_markdown

    text = "Returns policy > Opened items\nOpened <b>items</b> can be returned within 14 days. A fee applies."
    start = text.index("Opened <b>")
    end = text.index(" A fee")
    source = Source("en/returns.md#2", "Returns policy", 0.9, "Opened items", "en/returns.md", text, None, (start, end))
    quote = f"From “Returns policy”: “{text[start:end]}”"
    reply = Reply("generate", "en", [source], {}, iter([quote, "\n\nYes, within 14 days."]), 0.0, quote=quote).finish()
    shown = answer_markdown(reply)
    assert shown.startswith("> From “Returns policy”: “Opened &lt;b&gt;items&lt;/b&gt; can be returned within 14 days.”\n\nYes, within 14 days.")
    assert "<mark>Opened &lt;b&gt;items&lt;/b&gt; can be returned within 14 days.</mark> A fee applies." in shown  # the knowledge's markup stays text
    refused = Reply("abstain", "en", [source], {}, iter([quote, "\n\nI can't do that for you here."]), 0.0, quote=quote).finish()
    assert "**Sources** (quoted word for word from the passages below)" in answer_markdown(refused)  # a refused request's quote
