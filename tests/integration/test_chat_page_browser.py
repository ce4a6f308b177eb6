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
    shot_dir = Path(os.environ.get("KEFU_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot_dir / "chat.png"))
