"""`chatbot eval`: the metrics on a tiny hand-made set whose numbers were computed by hand, and the
shape of `--json`."""

from __future__ import annotations

import json

import pytest

from chatbot.cli import main
from chatbot.evaluation import abstain_metrics, first_gold_rank, rank_metrics


def test_rank_metrics_by_hand():
    # ranks 1, 3, 7, missed, 12 (beyond 10): hit@1 1/5, hit@5 2/5, hit@10 3/5,
    # MRR@10 (1 + 1/3 + 1/7) / 5 = 0.2952
    assert rank_metrics([1, 3, 7, None, 12]) == {"n": 5, "hit@1": 0.2, "hit@5": 0.4, "hit@10": 0.6, "mrr@10": 0.2952}


def test_abstain_metrics_by_hand():
    # in scope: 4 queries, 1 abstained; out of scope: 3 queries, 2 abstained
    # precision 2 / (2 + 1), recall 2 / 3, in-scope answered 3 / 4
    assert abstain_metrics([False, True, False, False], [True, True, False]) == {"precision": 0.6667, "recall": 0.6667, "in_scope_answered": 0.75}


def test_the_first_gold_passage_gives_the_rank():
    assert first_gold_rank(["a", "b", "c"], frozenset({"c", "b"})) == 2
    assert first_gold_rank(["a"], frozenset({"z"})) is None


KNOWLEDGE = [
    {"id": "acorn|parking", "title": "ACORN GUEST HOUSE", "text": "Is there parking? Free parking is available on site."},
    {"id": "acorn|wifi", "title": "ACORN GUEST HOUSE", "text": "Is there wifi? Free wifi in every room."},
    {"id": "bridge|parking", "title": "BRIDGE HOTEL", "text": "Is there parking? Parking costs 10 pounds a night."},
    {"id": "bridge|pets", "title": "BRIDGE HOTEL", "text": "Are pets allowed? Dogs are welcome."},
]
QUERIES = [
    {"id": "1", "history": [], "question": "Does the Acorn Guest House have wifi?", "gold_ids": ["acorn|wifi"]},
    {"id": "2", "history": [{"role": "user", "content": "Tell me about the Bridge Hotel."}, {"role": "assistant", "content": "It is central."}],
     "question": "Is parking free there?", "gold_ids": ["bridge|parking"]},
]
OUT_OF_SCOPE = [{"id": "3", "history": [], "question": "Book a table for two at 7pm.", "gold_ids": []}]


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_eval_json_prints_one_object_of_the_documented_shape(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    k = _write(tmp_path / "k.jsonl", KNOWLEDGE)
    q = _write(tmp_path / "q.jsonl", QUERIES)
    o = _write(tmp_path / "o.jsonl", OUT_OF_SCOPE)
    assert main(["--profile", "test", "eval", "--knowledge", str(k), "--queries", str(q), "--queries", str(o), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"all", "first_turns", "follow_ups", "abstain", "abstain_reasons", "thresholds", "calibration", "latency_ms"}
    for part in ("all", "first_turns", "follow_ups"):
        assert set(report[part]) == {"n", "hit@1", "hit@5", "hit@10", "mrr@10"}
        assert all(0 <= report[part][m] <= 1 for m in ("hit@1", "hit@5", "hit@10", "mrr@10"))
    assert report["all"]["n"] == 2 and report["first_turns"]["n"] == 1 and report["follow_ups"]["n"] == 1
    assert report["all"]["hit@1"] == 1.0  # both found first: by name, and by the subject named earlier
    assert set(report["abstain"]) == {"precision", "recall", "in_scope_answered"}
    assert set(report["latency_ms"]) == {"p50", "p95"}
    # which rule made each abstain, and the thresholds: the test profile sets them, so none is calibrated
    assert sum(report["abstain_reasons"]["out_of_scope"].values()) == round(report["abstain"]["recall"])
    assert set(report["abstain_reasons"]["out_of_scope"]) <= {"request", "off_topic"}
    assert report["thresholds"]["calibrated"] == [] and set(report["calibration"]["languages"]) == {"en", "zh"}


def test_a_part_with_no_queries_is_left_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    k = _write(tmp_path / "k.jsonl", KNOWLEDGE)
    q = _write(tmp_path / "q.jsonl", QUERIES[:1])
    main(["--profile", "test", "eval", "--knowledge", str(k), "--queries", str(q), "--json"])
    assert set(json.loads(capsys.readouterr().out)) == {"all", "first_turns", "abstain_reasons", "thresholds", "calibration", "latency_ms"}


def test_a_bad_line_is_an_error_naming_the_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    k = _write(tmp_path / "k.jsonl", KNOWLEDGE)
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps(QUERIES[0]) + "\n{not json\n", encoding="utf-8")
    assert main(["--profile", "test", "eval", "--knowledge", str(k), "--queries", str(q)]) == 2
    assert f"{q}:2: not JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Are pets allowed at the hotel?", ["pet", "allow", "hotel"]),
        ("已拆封的商品可以退货吗？", ["已", "拆封", "商品", "退货"]),
    ],
)
def test_bm25_tokens_are_stemmed_english_and_segmented_chinese(text, tokens):
    from chatbot.lexical import tokenize

    assert sorted(tokenize(text)) == sorted(tokens)


def test_a_title_is_also_known_by_its_distinctive_words_when_only_it_uses_them():
    from chatbot.retrieval import title_keys

    titles = ["ACORN GUEST HOUSE", "BRIDGE GUEST HOUSE", "CITY GUEST HOUSE", "FAQ: payment", "FAQ: returns"]
    texts = {
        "ACORN GUEST HOUSE": ["The acorn has parking."], "BRIDGE GUEST HOUSE": ["Bridge rooms."], "CITY GUEST HOUSE": ["Central."],
        "FAQ: payment": ["Pay by card."], "FAQ: returns": ["Returns of opened items: pay the payment fee."],
    }
    keys = title_keys(titles, texts)
    assert keys[" acorn guest house "] == "ACORN GUEST HOUSE" and keys[" acorn "] == "ACORN GUEST HOUSE"
    assert keys[" bridge "] == "BRIDGE GUEST HOUSE"
    assert " payment " not in keys  # another title's passages use the word: not a name


ITEM = {"expect": "answer", "must": [["14 days", "14-day"], ["15%"]], "must_not": ["full refund"]}


@pytest.mark.parametrize(
    ("item", "mode", "text", "correct"),
    [
        (ITEM, "generate", "Within 14 days, minus a 15% restocking fee.", True),
        (ITEM, "faq", "A 14-day window; 15% is deducted.", True),
        (ITEM, "generate", "Within 14 days.", False),  # a fact group missing
        (ITEM, "generate", "Within 14 days, 15% fee, or a full refund.", False),  # a forbidden claim
        (ITEM, "abstain", "14 days 15%", False),  # abstaining on an answerable question
        ({"expect": "abstain", "must": [], "must_not": []}, "abstain", "Sorry...", True),
        ({"expect": "abstain", "must": [], "must_not": []}, "generate", "Sure!", False),
    ],
)
def test_an_answer_is_scored_on_facts_forbidden_claims_and_abstaining(item, mode, text, correct):
    from chatbot.evaluation import score_answer

    assert score_answer(item, mode, text)["correct"] is correct


def test_the_answer_report_by_hand():
    from chatbot.evaluation import answer_report

    rows = [
        {"id": "1", "lang": "en", "expect": "answer", "mode": "generate", "correct": True, "missing": [], "forbidden": [], "source_given": True, "first_token_ms": 800.0, "tokens_per_s": 20.0, "checks": [], "answer": "a"},
        {"id": "2", "lang": "zh", "expect": "answer", "mode": "generate", "correct": False, "missing": [["x"]], "forbidden": [], "source_given": False, "first_token_ms": 1200.0, "tokens_per_s": 24.0, "checks": ["quantity"], "answer": "b"},
        {"id": "3", "lang": "en", "expect": "abstain", "mode": "abstain", "correct": True, "missing": [], "forbidden": [], "source_given": False, "first_token_ms": 5.0, "tokens_per_s": None, "answer": "c"},
    ]
    report = answer_report(rows, "fake")
    assert report["accuracy"] == 0.6667 and report["by_lang"] == {"en": 1.0, "zh": 0.0}
    assert report["answerable_correct"] == 0.5 and report["abstain_correct"] == 1.0 and report["source_given"] == 0.5
    assert report["modes"] == {"faq": 0, "generate": 2, "abstain": 1} and report["generated_correct"] == 0.5
    assert report["first_token_ms"] == {"p50": 1000.0, "p95": 1180.0} and report["tokens_per_s"] == 22.0
    assert [w["id"] for w in report["wrong"]] == ["2"]
    assert report["quote_only"] == 0.5 and report["quote_only_reasons"] == {"quantity": 1} and report["forbidden_shown"] == 0.0


def test_answers_are_embedded_only_where_pairs_and_statements_mix(tmp_path):
    """Among FAQ pairs alone the answers are never read (`Retriever._cosines`), so `chatbot eval`
    does not spend time embedding them; beside a statement they are embedded."""
    from pathlib import Path

    import numpy as np

    from chatbot.config import load_settings
    from chatbot.evaluation import load_knowledge, prepare_index

    settings = load_settings("test", environ={}, overrides={"data_dir": str(tmp_path / "data")})
    pairs = load_knowledge(_write(tmp_path / "k.jsonl", KNOWLEDGE))
    index, _ = prepare_index(settings, pairs, progress=False)
    assert not np.abs(index.answer_vectors).any()
    statement = {"id": "bridge|view", "title": "BRIDGE HOTEL", "text": "The rooms look over the river."}
    mixed = load_knowledge(_write(tmp_path / "m.jsonl", [*KNOWLEDGE, statement]))
    index, _ = prepare_index(settings, mixed, progress=False)
    assert np.abs(index.answer_vectors[:4]).sum(axis=1).all() and not np.abs(index.answer_vectors[4]).any()
    assert len(list(Path(tmp_path / "data" / "cache" / "embeddings").glob("answers-*.npy"))) == 1  # the mixed set's only


def test_the_calibration_lines_say_whether_subject_tracking_is_on_and_why():
    from chatbot.evaluation import calibration_lines

    off = calibration_lines({"languages": {}, "subject_tracking": {"passages_naming_a_title": 31, "own_title_share": 0.387, "on": False}})
    assert off == ["subject tracking: off, the titles are not names (0.387 of the 31 passages that name a title name their own)"]
    on = calibration_lines({"languages": {}, "subject_tracking": {"passages_naming_a_title": 0, "own_title_share": None, "on": True}})
    assert on == ["subject tracking: on, unless retrieval.subject_tracking is false (no passage names a title)"]


def test_token_f1_and_content_recall_by_hand():
    from chatbot.evaluation import content_recall, token_f1

    assert token_f1("free parking on site", "Parking is free on site.") == pytest.approx(2 * (4 / 4) * (4 / 5) / (4 / 4 + 4 / 5))
    assert token_f1("", "anything") == 0.0
    assert token_f1("可以退货", "可以退") == pytest.approx(2 * 0.75 * 1.0 / 1.75)  # Chinese by character
    assert content_recall("Dogs are welcome here", "Are pets allowed? Dogs are welcome.") == pytest.approx(2 / 4)


def test_eval_references_scores_answers_and_both_baselines_against_the_reference(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    k = _write(tmp_path / "k.jsonl", KNOWLEDGE)
    rows = [dict(q, reference=r) for q, r in zip(QUERIES, ["Yes, there is free wifi in every room.", "No, parking costs 10 pounds a night."])]
    q = _write(tmp_path / "q.jsonl", rows + OUT_OF_SCOPE)
    assert main(["--profile", "test", "eval", "--knowledge", str(k), "--queries", str(q), "--references", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 2  # the in-scope turns with a reference
    assert set(report["token_f1"]) == set(report["gold_content_recall"]) == {"kefu", "best_sentence", "top_passage"}
    assert report["answered"] == sum(n for mode, n in report["modes"].items() if mode != "abstain")
    assert all(0 <= v <= 1 for part in ("token_f1", "gold_content_recall") for v in report[part].values())
