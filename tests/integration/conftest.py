"""Integration fixtures: the real default profile (packaged LM and embedder, real FAISS index built
from `knowledge/`), with all state in a temporary data dir."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest

from chatbot.config import load_settings


def clean_env(data_dir=None) -> dict:
    """This process's environment without any CHATBOT_ setting (the default profile as shipped),
    with CHATBOT_DATA_DIR when `data_dir` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    return env | ({"CHATBOT_DATA_DIR": str(data_dir)} if data_dir is not None else {})


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def default_settings(data_dir):
    return load_settings("default", environ=clean_env(), overrides={"data_dir": str(data_dir)})


@pytest.fixture(scope="session")
def manager(default_settings):
    from chatbot.runtime import build_dialogue_manager

    return build_dialogue_manager(default_settings)


@pytest.fixture
def cli_env(data_dir):
    return clean_env(data_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ADMIN_PASSWORD = "integration-test-secret"


@pytest.fixture(scope="session")
def serve_data(tmp_path_factory):
    """The data dir of the `server` fixture: `chatbot kb` pointed here changes what it answers."""
    return tmp_path_factory.mktemp("serve-data")


def run_cli(*args: str, data_dir, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`chatbot ARGS` in a new process on the default profile with `data_dir`."""
    return subprocess.run(
        [sys.executable, "-m", "chatbot.cli", *args], env=clean_env(data_dir) | (env or {}),
        capture_output=True, text=True, timeout=timeout,
    )


def start_server(data_dir, log_path, env: dict | None = None, port: int | None = None, wait: bool = True) -> tuple[subprocess.Popen, str]:
    """`chatbot serve` on the default profile in a new process: (process, url), once /healthz
    answers (`wait_healthy`) or at once with `wait=False`."""
    port = port or _free_port()
    log = open(log_path, "a")  # noqa: SIM115 - the server writes to it for its whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot.cli", "serve", "--port", str(port)],
        env=clean_env(data_dir) | (env or {}), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    if wait:
        wait_healthy(proc, url, log_path)
    return proc, url


def wait_healthy(proc: subprocess.Popen, url: str, log_path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, open(log_path).read()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    pytest.fail(f"the server did not become healthy in {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def server(tmp_path_factory, serve_data):
    proc, url = start_server(serve_data, tmp_path_factory.mktemp("logs") / "serve.log", {"CHATBOT_ADMIN_PASSWORD": ADMIN_PASSWORD})
    yield url
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail("`chatbot serve` did not stop within 30 s of SIGTERM")


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


def sign_in(browser, url: str, timeout: float = 60):
    """Open the admin page at `url` and sign in as the owner (the admin password); returns a wait
    for the page once it shows the knowledge base."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{url}/admin/")
    wait = WebDriverWait(browser, timeout, poll_frequency=0.3)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"))
    browser.find_element(By.CSS_SELECTOR, "input[type=text]").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(ADMIN_PASSWORD, Keys.ENTER)
    wait.until(lambda d: "Index version" in d.execute_script("return document.body.innerText"))
    return wait


def click(driver, find, timeout: float = 30):
    """Click the element `find(driver)` returns once nothing covers it: on a loaded machine a
    Gradio page's pending overlay or an opening dropdown can take the click for a moment
    (ElementClickInterceptedException). Returns the element clicked."""
    from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d):
        element = find(d)
        if not element:
            return False
        element.click()
        return element

    ignored = (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException, StopIteration, IndexError)
    return WebDriverWait(driver, timeout, poll_frequency=0.3, ignored_exceptions=ignored).until(clicked)
