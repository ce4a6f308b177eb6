"""The admin page in headless Chromium against the real server: sign in, see the documents, upload
several files at once (one of them bad), see what went in and what was refused and why, remove a
document; the chat answers from each new version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import files
from tests.integration.conftest import click, sign_in

pytestmark = pytest.mark.slow
QUESTION = "Do you sell heirloom seed kits?"


def _text(driver) -> str:
    return driver.execute_script("return document.body.innerText")


def _chat_answer(url: str) -> str:
    from gradio_client import Client

    return str(Client(url, verbose=False).predict(QUESTION, [], api_name="/chat")[1][-1]["content"])


def test_an_admin_signs_in_uploads_a_batch_sees_each_outcome_and_removes_a_document(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seeds = tmp_path / "seed-kits.csv"
    seeds.write_text(f"question,answer\n{QUESTION},\"Yes: kits of 12 heirloom varieties, EUR 24.\"\n", encoding="utf-8")
    manual = tmp_path / "lamp-manual.pdf"
    manual.write_bytes(files.pdf(["Moon lamp setup. Hold the button for three seconds to pair it."], title="Moon lamp manual"))
    scan = tmp_path / "scanned-invoice.pdf"
    scan.write_bytes(files.scanned_pdf())

    browser.set_window_size(1300, 1500)
    wait = sign_in(browser, server)
    wait.until(lambda d: "en/faq.csv" in _text(d))

    browser.find_element(By.CSS_SELECTOR, "input[type=file][multiple]").send_keys("\n".join(str(p) for p in (seeds, manual, scan)))
    wait.until(lambda d: "scanned-invoice.pdf" in d.page_source)  # the three files are up
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if "Add to the knowledge base" in b.text))
    WebDriverWait(browser, 180, poll_frequency=0.3).until(lambda d: "is live" in _text(d))
    page = _text(browser)
    assert "Added seed-kits.csv (1 chunk)" in page and "Added lamp-manual.pdf (1 chunk)" in page
    assert "Refused scanned-invoice.pdf: no text could be extracted from its 2 page(s); it looks scanned" in page
    assert "indexed (upload)" in page
    shot_dir = Path(os.environ.get("KEFU_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shot_dir / "admin.png"))
    assert "seed-kits.csv" in _chat_answer(server)  # the upload was made live in the server at once

    picker = click(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[role=combobox]"))
    picker.send_keys("seed-kits.csv")
    click(browser, lambda d: next(o for o in d.find_elements(By.CSS_SELECTOR, "ul li.item") if "seed-kits.csv" in o.text))
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Remove document"))
    wait.until(lambda d: "Removed seed-kits.csv" in _text(d))
    assert "seed-kits.csv" not in _chat_answer(server)

    # An owner (the admin password) sees the staff and the audit log: what was just done is in it.
    click(browser, lambda d: next(b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Staff" in b.text))
    wait.until(lambda d: "Roles: viewer reads" in _text(d))
    visible = [i for i in browser.find_elements(By.CSS_SELECTOR, "textarea, input[type=password]") if i.is_displayed()]
    visible[0].send_keys("mia")
    next(i for i in visible if i.get_attribute("type") == "password").send_keys("a long agent password")
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Add user"))
    wait.until(lambda d: "Added mia as agent" in _text(d))
    browser.save_screenshot(str(shot_dir / "admin-staff.png"))
    click(browser, lambda d: next(b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Audit log" in b.text))
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Refresh" and b.is_displayed()))
    wait.until(lambda d: all(a in _text(d) for a in ("kb-remove", "kb-add", "sign-in", "user-add")))
    click(browser, lambda d: next(b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Verify the chain"))
    wait.until(lambda d: "The chain holds" in _text(d))
    browser.save_screenshot(str(shot_dir / "admin-audit.png"))
