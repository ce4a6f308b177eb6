"""The widget in headless Chromium on a test host page (another port, so another origin) against the
real `chatbot serve`: it opens, streams a cited answer, keeps the conversation after a reload, hands
off to a person whose reply (sent from the admin page) appears in it; markup written by the customer,
the bot's knowledge or the admin stays inert text. Screenshots at desktop and phone sizes."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import ADMIN_PASSWORD, _free_port, click, run_cli

pytestmark = pytest.mark.slow
XSS_QUESTION = 'Hi <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>'
XSS_FAQ_QUESTION = "What does the markup test answer say?"
XSS_ANSWER = 'It says <img src=x onerror="window.__xss=3"> and <b>bold</b>.'
XSS_REPLY = 'Mia here <img src=x onerror="window.__xss=4"><script>window.__xss=5</script>'


@pytest.fixture(scope="module")
def host_page(server, serve_data, tmp_path_factory):
    """A shop's page on its own port, embedding the widget with a site key for that origin."""
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    made = run_cli("sitekey", "add", "Test shop", "--origin", origin, data_dir=serve_data)
    assert made.returncode == 0, made.stderr
    site_key = made.stdout.strip()
    folder = tmp_path_factory.mktemp("host")
    (folder / "index.html").write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lumen &amp; Leaf</title><style>body{{font-family:Georgia,serif;background:#faf7f0;margin:0;padding:2em}} button{{color:red;font-size:40px}}</style></head>
<body><h1>Lumen &amp; Leaf</h1><p>Plants, lamps and homeware for calm homes.</p>
<script src="{server}/widget.js" data-site-key="{site_key}" data-title="Lumen &amp; Leaf · help"
 data-greeting="Hi! Ask me about delivery, returns or your order." data-color="#2f6f4f" async></script></body></html>""",
        encoding="utf-8",
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield origin
    httpd.shutdown()


def _shadow(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    host = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "div[data-kefu]"))
    return host.shadow_root


def _log_text(root) -> str:
    from selenium.webdriver.common.by import By

    return root.find_element(By.CSS_SELECTOR, ".log").text


def _open(browser):
    from selenium.webdriver.common.by import By

    root = _shadow(browser)
    root.find_element(By.CSS_SELECTOR, ".bubble").click()
    return root


def _ask(browser, root, text: str, until: str, timeout: float = 240):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(root.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
    root.find_element(By.CSS_SELECTOR, "textarea").send_keys(text, Keys.ENTER)
    partial = []

    def answered(_driver):
        answers = root.find_elements(By.CSS_SELECTOR, ".msg.assistant")
        if len(answers) <= before:
            return False
        last = answers[-1]
        if not last.find_elements(By.CSS_SELECTOR, ".thumbs"):
            partial.append(last.text)
            return False
        return until in last.text and last.text

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1).until(answered), partial
    except Exception:
        print("LOG:", _log_text(root))
        raise


def _shots() -> Path:
    folder = Path(os.environ.get("KEFU_SCREENSHOT_DIR", "/tmp/kefu-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_widget_streams_a_cited_answer_and_keeps_the_conversation_after_a_reload(host_page, browser, serve_data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(1200, 900)
    browser.get(host_page)
    root = _open(browser)
    assert root.find_element(By.CSS_SELECTOR, "[role=dialog]").get_attribute("aria-label") == "Lumen & Leaf · help"
    text, partial = _ask(browser, root, "How long is the warranty on a toaster?", "warranty-policy.md")
    assert partial, "the answer appeared all at once instead of streaming"
    answer = root.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
    quote = answer.find_element(By.CSS_SELECTOR, "blockquote.quote")  # the answer's quote, shown as one
    marked = answer.find_element(By.CSS_SELECTOR, ".sources mark").text  # its words highlighted in the source
    assert quote.text.startswith("From “Warranty policy”") and marked and marked in quote.text
    browser.execute_script("arguments[0].scrollIntoView()", quote)
    browser.save_screenshot(str(_shots() / "widget-desktop.png"))

    # A thumbs-down asks what was wrong (optional); the reason is stored with the rating, masked.
    next(b for b in answer.find_elements(By.CSS_SELECTOR, ".thumbs button") if "Not helpful" in b.text).click()
    why = WebDriverWait(browser, 30).until(lambda _d: answer.find_elements(By.CSS_SELECTOR, "form.why input"))[0]
    why.send_keys("It did not say how to claim; call me on 13812345678", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda _d: "Thanks for the feedback!" in answer.text)
    from datetime import datetime, timedelta

    from chatbot.store import Store, database_url

    _, down = Store(database_url("", serve_data)).gap_messages(datetime.now() - timedelta(hours=1))
    assert any(c.startswith("It did not say how to claim; call me on [phone") for c in down.values()), down

    browser.refresh()
    root = _open(browser)
    browser.implicitly_wait(0)
    WebDriverWait(browser, 30).until(lambda _d: "warranty-policy.md" in _log_text(root))
    assert "How long is the warranty on a toaster?" in _log_text(root)
    assert root.find_elements(By.CSS_SELECTOR, ".msg.assistant blockquote.quote")  # a stored answer keeps its quote

    # An over-long message: the server's reason is shown and the text stays in the box, nothing lost.
    root.find_element(By.CSS_SELECTOR, "textarea").send_keys("y" * 2500, Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda _d: "over the limit of 2000" in _log_text(root))
    assert len(root.find_element(By.CSS_SELECTOR, "textarea").get_property("value")) == 2500
    assert "y" * 100 not in _log_text(root)  # not shown as sent
    root.find_element(By.CSS_SELECTOR, "textarea").clear()

    browser.set_window_size(390, 844)  # a phone
    browser.refresh()
    root = _open(browser)
    WebDriverWait(browser, 30).until(lambda _d: "warranty-policy.md" in _log_text(root))
    panel = root.find_element(By.CSS_SELECTOR, ".panel")
    assert panel.size["width"] <= 390
    browser.save_screenshot(str(_shots() / "widget-phone.png"))


def test_markup_stays_text_and_a_handoff_reply_from_the_admin_page_appears(host_page, browser, server, serve_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    faq = tmp_path / "markup-test.csv"
    faq.write_text(f"question,answer\n{XSS_FAQ_QUESTION},\"{XSS_ANSWER.replace(chr(34), chr(34) * 2)}\"\n", encoding="utf-8")
    assert run_cli("kb", "add", str(faq), data_dir=serve_data).returncode == 0

    browser.set_window_size(1200, 900)
    browser.get(host_page)
    browser.execute_script("localStorage.clear()")  # a new visitor
    browser.refresh()
    root = _open(browser)
    _ask(browser, root, XSS_QUESTION, "")
    _ask(browser, root, XSS_FAQ_QUESTION, "<b>bold</b>")
    log = _log_text(root)
    assert XSS_QUESTION.split(" <script>")[0] in log and "<script>window.__xss=2</script>" in log and XSS_ANSWER in log

    next(b for b in root.find_elements(By.CSS_SELECTOR, "button") if b.text == "Talk to a person").click()
    WebDriverWait(browser, 30).until(lambda _d: "I've asked a person from our team to take over." in _log_text(root))
    conversation = json.loads(browser.execute_script("return Object.values(localStorage)[0]"))["conversation"]

    # The admin, in another tab: Conversations, the handed-off one, a reply with markup in it.
    widget_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(f"{server}/admin/")
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"))
    browser.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(ADMIN_PASSWORD, Keys.ENTER)
    click(browser, lambda d: next(b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Conversations" in b.text), 60)
    picker = click(browser, lambda d: next(i for i in d.find_elements(By.CSS_SELECTOR, "input[role=combobox]") if i.get_attribute("aria-label") == "Conversation" and i.is_displayed()))
    picker.send_keys(conversation[:8])
    click(browser, lambda d: next(o for o in d.find_elements(By.CSS_SELECTOR, "ul li.item") if conversation[:8] in o.text))
    WebDriverWait(browser, 30).until(lambda d: "Handed off" in d.execute_script("return document.body.innerText"))
    reply_box = next(t for t in browser.find_elements(By.CSS_SELECTOR, "textarea") if t.is_displayed() and t.get_attribute("aria-label") != "Show")
    reply_box.send_keys(XSS_REPLY)
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Send reply"))
    WebDriverWait(browser, 30).until(lambda d: XSS_REPLY in d.execute_script("return document.body.innerText"))
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "img[src=x]")
    browser.save_screenshot(str(_shots() / "admin-inbox.png"))

    browser.switch_to.window(widget_tab)
    WebDriverWait(browser, 30).until(lambda _d: XSS_REPLY in _log_text(root))
    handoff = next(m for m in root.find_elements(By.CSS_SELECTOR, ".msg.assistant") if "take over" in m.text)
    assert not handoff.find_elements(By.CSS_SELECTOR, ".thumbs")  # a notice, not an answer to rate
    agent = root.find_elements(By.CSS_SELECTOR, ".msg.agent")
    assert agent and "Agent" in agent[-1].text
    assert browser.execute_script("return window.__xss") is None
    assert not root.find_elements(By.CSS_SELECTOR, "img, script, b")
    browser.save_screenshot(str(_shots() / "widget-handoff.png"))
    assert run_cli("kb", "remove", "markup-test.csv", data_dir=serve_data).returncode == 0


def test_a_visitor_downloads_their_chat_masked_and_deletes_it(host_page, browser, serve_data, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from chatbot.store import Store, database_url
    from tests.pii import PII_MESSAGE, SECRETS

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.set_window_size(1200, 900)
    browser.get(host_page)
    browser.execute_script("localStorage.clear()")  # a new visitor
    browser.refresh()
    root = _open(browser)
    _ask(browser, root, "How long does standard delivery take? " + PII_MESSAGE, "")
    assert PII_MESSAGE in _log_text(root)  # the visitor's own view shows what they typed
    visitor = json.loads(browser.execute_script("return Object.values(localStorage)[0]"))["visitor"]

    next(b for b in root.find_elements(By.CSS_SELECTOR, ".mine button") if b.text == "Download my chat").click()
    WebDriverWait(browser, 30).until(lambda _d: (downloads / "my-chat.json").is_file())
    exported = (downloads / "my-chat.json").read_text(encoding="utf-8")
    assert "How long does standard delivery take?" in exported and "[card ••••0128]" in exported
    assert not any(secret in exported for secret in SECRETS)  # stored masked, so exported masked

    erase = next(b for b in root.find_elements(By.CSS_SELECTOR, ".mine button") if b.text == "Delete my chat")
    erase.click()
    assert erase.text == "Delete everything? Click again"  # the first click only asks
    browser.save_screenshot(str(_shots() / "widget-delete.png"))
    erase.click()
    WebDriverWait(browser, 30).until(lambda _d: "Your chat was deleted" in _log_text(root))
    assert "How long does standard delivery take?" not in _log_text(root)
    store = Store(database_url("", serve_data))
    assert store.export(visitor=visitor)["conversations"] == []
    assert store.audit_log(action="erase")[0].actor == f"visitor:{visitor}"
