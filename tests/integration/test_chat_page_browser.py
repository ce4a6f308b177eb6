"""The chat page in headless Chromium: a question typed and sent, the answer streamed with its sources."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromedriver are missing: `make test` installs them (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1100,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


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
