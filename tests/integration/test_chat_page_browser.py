"""The chat page in headless Chromium: a question typed and sent, the answer streamed with its sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_a_question_gets_a_streamed_cited_answer_in_the_page(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
    box.send_keys("How long is the warranty on a toaster?", Keys.ENTER)  # a generated (streamed) answer
    seen_partial = []

    def answered(driver):
        bots = driver.find_elements(By.CSS_SELECTOR, ".message-row.bot-row, .bot")
        text = bots[-1].text if bots else ""
        if text and "Sources" not in text:
            seen_partial.append(text)
        return "Sources" in text and text

    text = WebDriverWait(browser, 240, poll_frequency=0.2).until(answered)
    assert "warranty-policy.md" in text
    assert seen_partial, "the answer appeared all at once instead of streaming"
    bot = browser.find_elements(By.CSS_SELECTOR, ".message-row.bot-row, .bot")[-1]
    quote = bot.find_element(By.CSS_SELECTOR, "blockquote")  # the answer's quote, shown as one
    marked = bot.find_element(By.CSS_SELECTOR, "mark").text  # its words highlighted in the source
    assert quote.text.startswith("From “Warranty policy”") and marked and marked in quote.text
    browser.execute_script("arguments[0].scrollIntoView()", quote)
    shot_dir = Path(os.environ.get("KEFU_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot_dir / "chat.png"))


def test_a_customer_asking_for_a_person_is_handed_off_and_sees_the_admins_reply(server, serve_data, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from chatbot.store import Store, database_url

    question = "Can I talk to a human about my order 4711?"
    browser.get(server)
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
    box.send_keys(question, Keys.ENTER)
    page = lambda d: d.execute_script("return document.body.innerText")
    WebDriverWait(browser, 60).until(lambda d: "asked a person from our team to take over" in page(d))
    store = Store(database_url("", serve_data))
    conversation = next(r for r in store.list_conversations("handoff") if r["first"] == question)
    browser.find_element(By.CSS_SELECTOR, "textarea").send_keys("Are you there?", Keys.ENTER)
    WebDriverWait(browser, 30).until(lambda d: "Are you there?" in page(d))
    store.add_message(conversation["id"], "agent", "Hello, this is Mia. Order 4711 ships today.")
    WebDriverWait(browser, 30).until(lambda d: "Hello, this is Mia. Order 4711 ships today." in page(d))
    text = page(browser)
    assert "Agent · 客服" in text
    assert text.count("Sources") == 0  # the bot stayed quiet: no answer to "Are you there?"
    assert [m.role for m in store.messages(conversation["id"])] == ["user", "assistant", "user", "agent"]


def test_a_refused_message_is_kept_in_the_box_and_answered_in_a_bubble_of_its_own(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    box = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea"))
    box.send_keys("What payment methods do you accept?", Keys.ENTER)  # a curated FAQ answer
    bots = lambda d: d.find_elements(By.CSS_SELECTOR, ".message-row.bot-row")
    WebDriverWait(browser, 60).until(lambda d: bots(d) and "Sources" in bots(d)[-1].text)
    box.send_keys("y" * 2500, Keys.ENTER)  # over the 2,000-character limit
    WebDriverWait(browser, 60).until(lambda d: "over the limit of 2000" in bots(d)[-1].text)
    rows = bots(browser)
    # Its own bubble: grouped with the answer before it, it read as part of that answer.
    assert len(rows) == 2 and "Sources" in rows[0].text and "Sources" not in rows[1].text
    assert not browser.find_elements(By.CSS_SELECTOR, ".message-row.user-row")[1:]  # not shown as sent
    assert len(browser.find_element(By.CSS_SELECTOR, "textarea").get_attribute("value")) == 2500  # kept to shorten
