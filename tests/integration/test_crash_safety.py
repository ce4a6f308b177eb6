"""An ingest killed with SIGKILL (a real `chatbot kb add` process) at each step of an update, and at
a moment chosen by the clock: the service then starts and answers from the last complete version,
and running the update again completes it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests import files
from tests.integration.conftest import clean_env, run_cli

pytestmark = pytest.mark.slow
QUESTION = "Do you offer a plant-sitting service while I travel?"
SITTER_CSV = f"question,answer\n{QUESTION},\"Yes: our Leaf Sitter visits twice a week for EUR 12 a visit.\"\n"
# The steps of `KnowledgeBase._update` and `KnowledgeIndex.save`, in order (`KEFU_CRASH_AT`).
STEPS = ["after-originals", "mid-embedding", "before-rename", "before-swap", "after-swap"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash-data")
    built = run_cli("kb", "list", data_dir=folder)  # builds the first version from knowledge/
    assert built.returncode == 0, built.stderr
    return folder


def _answer_source(data_dir) -> tuple[str, str]:
    """What a freshly started service answers to QUESTION: (first source, index version)."""
    asked = run_cli("ask", "--json", QUESTION, data_dir=data_dir)
    assert asked.returncode == 0, asked.stderr
    reply = json.loads(asked.stdout)
    return (reply["sources"][0]["source"] if reply["sources"] else ""), _current(data_dir)


def _current(data_dir) -> str:
    return (data_dir / "index" / "CURRENT").read_text().strip()


def _leftovers(data_dir) -> list[str]:
    versions = data_dir / "index" / "versions"
    return [p.name for p in versions.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("step", STEPS)
def test_an_ingest_killed_at_a_step_leaves_the_last_complete_version_live_and_a_rerun_completes(data_dir, tmp_path, step):
    path = tmp_path / "plant-sitting.csv"
    path.write_text(SITTER_CSV, encoding="utf-8")
    before = _current(data_dir)

    killed = run_cli("kb", "add", str(path), data_dir=data_dir, env={"KEFU_CRASH_AT": step})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])

    source, version = _answer_source(data_dir)
    if step == "after-swap":  # the new version was live before the kill
        assert source == "plant-sitting.csv" and version != before
    else:
        assert source != "plant-sitting.csv" and version == before

    rerun = run_cli("kb", "add", str(path), "--json", data_dir=data_dir)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["unchanged"] if step == "after-swap" else [d["name"] for d in report["added"]]) == ["plant-sitting.csv"]
    assert _answer_source(data_dir)[0] == "plant-sitting.csv"
    assert _leftovers(data_dir) == [] or step == "after-swap"  # a completed write clears what a crash left

    cleanup = run_cli("kb", "remove", "plant-sitting.csv", data_dir=data_dir)
    assert cleanup.returncode == 0, cleanup.stderr
    assert _leftovers(data_dir) == [] and len(list((data_dir / "index" / "versions").iterdir())) <= 2


def test_an_ingest_killed_at_a_moment_chosen_by_the_clock_loses_nothing(data_dir, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, data in files.mixed_corpus(20, seed=3):
        (folder / name).write_bytes(data)
    before = _current(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "chatbot.cli", "kb", "add", str(folder)], env=clean_env(data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Kill once the embedding is under way: the first batch's progress line has been written.
    deadline = time.monotonic() + 120
    seen = b""
    while b"embedded" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read1(4096)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert _current(data_dir) == before
    listed = run_cli("kb", "list", "--json", data_dir=data_dir)
    assert listed.returncode == 0 and not any(d["name"].startswith(("guide-", "faq-")) for d in json.loads(listed.stdout))
    rerun = run_cli("kb", "add", str(folder), "--json", data_dir=data_dir)
    assert rerun.returncode == 0 and len(json.loads(rerun.stdout)["added"]) == 20, rerun.stderr
    assert _leftovers(data_dir) == []
