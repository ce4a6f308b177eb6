"""The answer set through the OpenAI-compatible backend, served by llama.cpp's own server.

    .venv/bin/python bench/answers_openai.py [--model packaged:qwen2.5-coder-0.5b] [--answers bench/answers.jsonl] [--out FILE]

Starts `python -m llama_cpp.server` on a free local port with the packaged GGUF (the same weights
and threads as the in-process default), points `llm.backend: openai` at it, runs `chatbot eval
--answers` through the live dialogue manager, and prints the report's figures as one JSON line.
The server gets the prompt without the verdict grammar of a yes/no answer, so the instruction
alone asks for the verdict; `--grammar` sends it in the request's `grammar` field
(`llm.grammar_field`), which this server honours but decodes about 10x slower (docs/quality.md). Not a test: the backend table in docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.evaluation import run_answer_eval
from chatbot.weights import resolve_gguf
from tests.lm_server import llama_server

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="packaged:qwen2.5-coder-0.5b")
    parser.add_argument("--answers", type=Path, default=HERE / "answers.jsonl")
    parser.add_argument("--grammar", action="store_true", help="send the verdict grammar (llm.grammar_field: grammar); slow on this server: docs/quality.md")
    parser.add_argument("--out", type=Path, help="also write the whole report (with the wrong answers) here")
    args = parser.parse_args()
    settings = load_settings()
    path = resolve_gguf(args.model, settings.model_cache_dir)
    threads = settings.llm.threads or os.cpu_count() or 1
    with llama_server(path, args.model, threads, settings.llm.context_tokens) as server:
        overrides = {"llm.backend": "openai", "llm.base_url": server.base_url, "llm.model": args.model}
        served = load_settings(overrides=overrides | ({"llm.grammar_field": "grammar"} if args.grammar else {}))
        report = run_answer_eval(served, args.answers, progress=False)
    if args.out:
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "wrong"}, ensure_ascii=False))


if __name__ == "__main__":
    main()
