"""How long a replay takes (`chatbot/replay.py`): N stored questions (the answer set's, with their
conversations, repeated to N) and a labelled set asked of the live version and of a changed one.

    .venv/bin/python bench/replay.py [--questions 1000] [--remove en/returns-and-refunds-policy.md]

Builds the live index from `knowledge/` in a temporary data dir (the default profile), stores the
questions there with the answers the live version gives them, tries adding one small document (or
removing one, `--remove`: a change that moves many answers) with `KnowledgeBase.try_change`, and
replays. Prints the time to build the shadow version, the replay's time and questions per second,
and of it the time to answer the changed questions again (the LM's sentence included). Not a
test: the figures of the README's "Knowledge gaps".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.config import load_settings
from chatbot.kb import KnowledgeBase, Upload
from chatbot.replay import labelled_questions, replay, stored_questions
from chatbot.runtime import build_dialogue_manager
from chatbot.store import Store, database_url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--remove", help="a document of knowledge/ to remove, instead of adding one")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="kefu-replay-"))
    settings = load_settings(overrides={"data_dir": str(data)})
    manager = build_dialogue_manager(settings)
    store = Store(database_url("", data))
    answers: dict[str, str] = {}  # the live version's answer, once per distinct question
    items = [json.loads(line) for line in (ROOT / "bench" / "answers.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    for n in range(args.questions):
        item = items[n % len(items)]
        c = store.create_conversation("bench", f"visitor-{n}").id
        for message in item.get("history") or []:
            store.add_message(c, message["role"], message["content"])
        store.add_message(c, "user", item["question"])
        if item["question"] not in answers:
            answers[item["question"]] = manager.respond(item["question"], item.get("history") or []).finish().text
        store.add_message(c, "assistant", answers[item["question"]])
    evalsets = data / "evalsets"  # the shop's labelled questions, in and out of scope
    evalsets.mkdir()
    for path in (ROOT / "bench" / "shop").glob("queries*.jsonl"):
        (evalsets / path.name).write_bytes(path.read_bytes())
    asked = stored_questions(store) + labelled_questions(evalsets)
    started = time.perf_counter()
    kb = KnowledgeBase(settings, manager.retriever.embedder)
    if args.remove:
        report = kb.try_change(remove=(args.remove,))
    else:
        report = kb.try_change([Upload("gift-wrap.csv", "question,answer\nDo you offer gift wrapping?,Yes: gift wrap is USD 4 per item.\n".encode())])
    shadow_s = time.perf_counter() - started
    result = replay(manager, report.index, asked)
    print(json.dumps({"questions": result["asked"], "labelled": result["labelled"], "changes": len(result["changes"]), "harmful": result["harmful"],
                      "shadow_version_s": round(shadow_s, 2), "replay_s": result["seconds"],
                      "answered_again": result["answered_again"], "answer_s": result["answer_seconds"],
                      "questions_per_s": round(result["asked"] / result["seconds"], 1) if result["seconds"] else None}))


if __name__ == "__main__":
    main()
