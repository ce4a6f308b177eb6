"""The abstain calibration, step by step, on fakes: the probes, the best cosines with a probe's own
passage held out, the domains left out as the knowledge's own, the threshold, what is stored, and
which threshold is in force."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document

from chatbot.calibration import (
    Probe,
    Thresholds,
    best_cosines,
    unit_parts,
    calibrate,
    choose,
    in_scope_probes,
    load_off_topic,
    needs_calibration,
    probe_question,
    resolve,
)
from chatbot.config import load_settings
from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import ConfigError
from chatbot.index import KnowledgeIndex


def _chunk(text, kind="section", lang="en", title="Guide", **meta):
    return Document(page_content=f"{title}\n{text}", metadata={"id": text[:12], "title": title, "kind": kind, "lang": lang, **meta})


def test_a_probe_asks_the_faq_question_the_opening_question_or_the_first_sentence_of_some_length():
    assert probe_question(_chunk("Q? A.", kind="faq", question="Can I pay later?", answer="Yes.")) == "Can I pay later?"
    assert probe_question(_chunk("Do you have parking? There is parking behind the hotel.")) == "Do you have parking?"
    assert probe_question(_chunk("Hi. Orders ship within two working days of payment. Tracking follows.")) == "Orders ship within two working days of payment."
    assert probe_question(_chunk("营业厅。办理居住证需要身份证和租房合同。", lang="zh")) == "办理居住证需要身份证和租房合同。"
    assert probe_question(_chunk("Ok. Yes.")) is None


def test_in_scope_probes_hold_their_own_passage_and_are_sampled_per_language_the_same_each_time():
    chunks = [_chunk(f"Statement number {i} is long enough to be a probe.") for i in range(12)] + [
        _chunk(f"第{i}条说明足够长可以用来提问。", lang="zh") for i in range(3)
    ]
    probes = in_scope_probes(chunks, limit=5)
    assert sorted(p.lang for p in probes) == ["en"] * 5 + ["zh"] * 3
    assert all(chunks[p.row].page_content.endswith(p.text) for p in probes)
    assert probes == in_scope_probes(chunks, limit=5)


def test_off_topic_probes_are_read_by_domain_and_a_bad_file_says_what_it_needs(tmp_path):
    path = tmp_path / "off.yaml"
    path.write_text("domains:\n  pets:\n    en: ['Is my dog too fat?']\n    zh: [猫能吃巧克力吗？]\n  weather:\n    en: ['Will it rain?']\n", encoding="utf-8")
    assert load_off_topic(path) == [Probe("Is my dog too fat?", "en", None, "pets"), Probe("猫能吃巧克力吗？", "zh", None, "pets"), Probe("Will it rain?", "en", None, "weather")]
    path.write_text("questions: [a, b]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs 'domains'"):
        load_off_topic(path)


def test_the_shipped_off_topic_probes_cover_many_domains_in_both_languages():
    probes = load_off_topic(load_settings("test", environ={}).prompts_dir / "off_topic.yaml")
    domains = {p.domain for p in probes}
    assert len(domains) >= 20 and "requests_to_act" in domains
    for lang in ("en", "zh"):
        assert all(sum(p.domain == d and p.lang == lang for p in probes) >= 12 for d in domains)


def test_best_cosines_leave_a_probe_s_own_passage_out_and_score_zero_for_a_model_that_did_not_read_it():
    passages = np.asarray([[1.0, 0.0, 1.0, 0.0], [0.6, 0.8, 0.0, 1.0]], dtype=np.float32)
    queries = np.asarray([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    parts = [(0, 2), (2, 4)]
    best = best_cosines(unit_parts(passages, parts), queries, parts, [None, 0])
    assert best[0].tolist() == pytest.approx([1.0, 0.0])  # its own passage would match itself...
    assert best[1].tolist() == pytest.approx([0.6, 0.0])  # ...held out, the next best counts


def test_the_knowledge_s_own_domain_is_left_out_and_the_threshold_separates_the_probes():
    rng = np.random.default_rng(0)
    in_scope = rng.normal(0.80, 0.03, 200)
    by_domain = {f"d{i}": rng.normal(0.50, 0.03, 20) for i in range(10)} | {"own": rng.normal(0.79, 0.03, 20)}
    chosen = choose(in_scope, by_domain)
    assert chosen["own_domains"] == ["own"]  # a bank among the banking questions is not off-topic
    assert 0.6 < chosen["threshold"] < 0.75
    assert chosen["in_scope_answered"] == 1.0 and chosen["off_topic_abstained"] == 1.0 and chosen["off_topic_probes"] == 200
    kept = choose(in_scope, {k: v for k, v in by_domain.items() if k != "own"})
    assert kept["own_domains"] == []


def test_without_passages_in_a_language_the_threshold_is_the_95th_percentile_of_its_off_topic_probes():
    by_domain = {"a": np.linspace(0.0, 1.0, 101), "b": np.linspace(0.0, 1.0, 101)}
    chosen = choose(np.asarray([]), by_domain)
    assert chosen["threshold"] == pytest.approx(0.95) and chosen["in_scope_answered"] is None
    assert chosen["off_topic_quartile"] == pytest.approx(0.25)  # the floor under a conversation's lift (`turn_topic`)
    assert chosen["in_scope_upper_quartile"] is None  # no own questions: no request is taken as covered
    assert choose(np.linspace(0.5, 0.9, 5), by_domain)["in_scope_upper_quartile"] == pytest.approx(0.8)


def test_calibrate_stores_thresholds_per_language_with_the_shares_and_warns_when_probes_overlap(tmp_path):
    off = tmp_path / "off.yaml"
    off.write_text(
        "domains:\n"
        "  weather:\n    en: ['Will it rain tomorrow in the mountains?', 'How hot is the summer in the desert?']\n    zh: [明天会下雨吗？]\n"
        "  sports:\n    en: ['Who won the football cup final?', 'When does the tennis season start?']\n    zh: [昨晚的足球比赛谁赢了？]\n",
        encoding="utf-8",
    )
    chunks = [_chunk(f"Returns of item kind {i} are accepted within {i + 10} days with the receipt.") for i in range(6)]
    index = KnowledgeIndex.build(chunks, FakeEmbeddings())
    result = calibrate(index, FakeEmbeddings(), off)
    assert set(result["answer_threshold"]) == {"en", "zh"}
    en = result["languages"]["en"]
    assert en["in_scope_probes"] == 6 and en["off_topic_probes"] == 4
    assert en["in_scope_answered"] == 1.0 and en["off_topic_abstained"] == 1.0 and result["warnings"] == []
    assert result["languages"]["zh"]["in_scope_answered"] is None  # no Chinese passages: off-topic alone
    assert not needs_calibration(index.manifest | {"calibration": result}, FakeEmbeddings.name, off)

    same = tmp_path / "same.yaml"  # off-topic probes that are this knowledge's own questions
    same.write_text("domains:\n" + "".join(f"  d{i}:\n    en: ['{c.page_content.splitlines()[1]}']\n" for i, c in enumerate(chunks)), encoding="utf-8")
    overlapping = calibrate(index, FakeEmbeddings(), same)
    assert overlapping["warnings"] and "overlap" in overlapping["warnings"][0]


def test_a_calibration_is_redone_for_another_embedder_other_probes_or_none_at_all(tmp_path):
    off = tmp_path / "off.yaml"
    off.write_text("domains:\n  a:\n    en: [x]\n", encoding="utf-8")
    index = KnowledgeIndex.build([_chunk("Parcels ship in two days to any address.")], FakeEmbeddings())
    current = index.manifest | {"calibration": calibrate(index, FakeEmbeddings(), off)}
    assert not needs_calibration(current, FakeEmbeddings.name, off)
    assert needs_calibration(index.manifest, FakeEmbeddings.name, off)
    assert needs_calibration(current, "another/embedder", off)
    off.write_text("domains:\n  a:\n    en: [y]\n", encoding="utf-8")
    assert needs_calibration(current, FakeEmbeddings.name, off)


def test_a_threshold_in_the_settings_overrides_that_language_s_calibration_alone():
    settings = load_settings("test", environ={}).retrieval.model_copy(update={"answer_threshold": {}})
    calibration = {"answer_threshold": {"en": 0.61, "zh": 0.88}}
    assert resolve(settings, calibration) == Thresholds(settings.faq_threshold, {"en": 0.61, "zh": 0.88}, settings.request_threshold)
    overridden = resolve(settings.model_copy(update={"answer_threshold": {"zh": 0.9}}), calibration)
    assert overridden.answer == {"en": 0.61, "zh": 0.9}
    with_floor = resolve(settings, calibration | {"languages": {"en": {"off_topic_quartile": 0.4, "in_scope_upper_quartile": 0.8}, "zh": {"in_scope_upper_quartile": None}}})
    assert with_floor.floor == {"en": 0.4} and with_floor.covered == {"en": 0.8}
    assert Thresholds(0.9, {"en": 0.5}).answer_for("zh") == 0.5  # a language without one: the highest
    with pytest.raises(ConfigError, match="no calibration"):
        resolve(settings, None)


def test_the_nearest_off_topic_probe_is_of_the_questions_language_and_not_of_the_knowledges_own_domain(tmp_path):
    import numpy as np

    from chatbot.embeddings import FakeEmbeddings
    from chatbot.turns import OffTopicProbes

    path = tmp_path / "off_topic.yaml"
    path.write_text("domains:\n  weather:\n    en: [will it rain tomorrow]\n    zh: [明天会下雨吗]\n  banking:\n    en: [how do i reset my card pin]\n", encoding="utf-8")
    embedder = FakeEmbeddings()
    probes = OffTopicProbes.load(path, embedder)
    rain = np.asarray(embedder.embed_query("will it rain tomorrow"), dtype=np.float32)
    assert probes.nearest(rain, "en") == pytest.approx(1.0, abs=1e-5)
    assert probes.nearest(rain, "en", own_domains=("weather",)) < 0.9  # a weather service's own subject
    assert probes.nearest(rain, "de") == -1.0  # no probes in that language
