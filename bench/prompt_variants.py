"""Prompt variants scored on the labelled answer set, one LM at a time.

    .venv/bin/python bench/prompt_variants.py [--answers bench/answers.jsonl] [--variant NAME ...] [--set key=value ...] [--out DIR]

A variant is a folder under `bench/prompt_variants/` holding the templates it changes (`system.j2`,
`user.j2`); the others come from `prompts/`. `--variant default` is `prompts/` as shipped, and
`--set retrieval.passages_in_prompt=1` (say) changes a setting for every variant. Each variant runs
the whole set through the live dialogue manager (`chatbot eval --answers`) and prints one JSON line:
accuracy, the LM's own answers right, first token and tokens/s. Not a test: the LM table in
docs/quality.md comes from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.config import load_settings
from chatbot.evaluation import run_answer_eval

HERE = Path(__file__).resolve().parent
VARIANTS = HERE / "prompt_variants"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=Path, default=HERE / "answers.jsonl")
    parser.add_argument("--variant", action="append", help=f"default, or a folder of {VARIANTS.name}/ (all when omitted)")
    parser.add_argument("--set", action="append", default=[], help="a settings override, e.g. llm.model=packaged:qwen2.5-coder-1.5b")
    parser.add_argument("--out", type=Path, help="also write each variant's whole report (with the wrong answers) to OUT/<variant>.json")
    args = parser.parse_args()
    names = args.variant or ["default", *sorted(p.name for p in VARIANTS.iterdir() if p.is_dir())]
    base = dict(item.split("=", 1) for item in args.set)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "prompts"
            shutil.copytree(load_settings(overrides=base).prompts_dir, folder)
            if name != "default":
                for template in (VARIANTS / name).glob("*.j2"):
                    shutil.copy(template, folder / template.name)
            report = run_answer_eval(load_settings(overrides=base | {"prompts_dir": str(folder)}), args.answers, progress=False)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
        keys = ("model", "accuracy", "by_lang", "generated_correct", "modes", "first_token_ms", "tokens_per_s")
        print(json.dumps({"variant": name, "set": base, **{k: report.get(k) for k in keys}, "wrong": [w["id"] for w in report["wrong"]]}, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
