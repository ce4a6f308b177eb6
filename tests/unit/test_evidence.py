"""The evidence sentences of an answer (`chatbot/evidence.py`): offsets into the passage, best first."""

from langchain_core.documents import Document

from chatbot.embeddings import FakeEmbeddings
from chatbot.evidence import case_first, select, sentence_spans
from chatbot.index import Hit


def test_sentences_keep_their_offsets_and_skip_the_title_line_and_questions():
    text = "Returns policy > Opened items\nCan I return it? Opened items can be returned within 14 days. The fee is USD 4.95! 退货请联系客服。运费由买家承担；\nShort."
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "Opened items can be returned within 14 days.", "The fee is USD 4.95!", "退货请联系客服。", "运费由买家承担；", "Short.",
    ]


def test_a_passage_without_a_sentence_of_its_own_gives_its_body():
    text = "Opening hours\nMon-Fri 9:00-17:00"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["Mon-Fri 9:00-17:00"]
    assert sentence_spans("A title alone\n") == []


def test_the_sentences_nearest_the_question_are_chosen_best_first():
    embedder = FakeEmbeddings()
    hits = [
        Hit(Document(page_content="Returns\nShipping takes 3 days. Opened items can be returned within 14 days.", metadata={"title": "Returns"}), 0.9, 0),
        Hit(Document(page_content="Warranty\nLamps have a 2-year warranty.", metadata={"title": "Warranty"}), 0.8, 1),
    ]
    question = "opened items returned within 14 days"
    chosen = select(embedder, __import__("numpy").asarray(embedder.embed_query(question)), hits, "en", limit=2)
    assert len(chosen) == 2
    assert chosen[0].text == "Opened items can be returned within 14 days." and chosen[0].title == "Returns"
    assert chosen[0].hit.chunk.page_content[chosen[0].start : chosen[0].end] == chosen[0].text
    assert chosen[0].score >= chosen[1].score


def test_a_sentence_that_repeats_one_already_chosen_gives_way_to_the_next():
    """A FAQ answer and the policy it summarises say the same: the second copy would crowd out the
    sentence with the figure the question needs."""
    embedder = FakeEmbeddings()
    hits = [
        Hit(Document(page_content="Can I return an opened item?\nYes, opened items can be returned within 14 days.", metadata={"title": "FAQ"}), 0.9, 0),
        Hit(Document(page_content="Returns\nOpened items can be returned within 14 days. A restocking fee of 15% applies to opened items.", metadata={"title": "Returns"}), 0.8, 1),
        Hit(Document(page_content="礼品卡\n礼品卡不可退款。礼品卡自购买之日起 3 年内有效。", metadata={"title": "礼品卡"}), 0.7, 2),
        Hit(Document(page_content="常见问题\n礼品卡不可退款。", metadata={"title": "常见问题"}), 0.6, 3),
    ]
    question = "opened items returned within 14 days"
    chosen = [e.text for e in select(embedder, __import__("numpy").asarray(embedder.embed_query(question)), hits, "en", limit=2)]
    assert chosen[1] == "A restocking fee of 15% applies to opened items."
    chosen = [e.text for e in select(embedder, __import__("numpy").asarray(embedder.embed_query("礼品卡不可退款")), hits[2:], "zh", limit=2)]
    assert chosen == ["礼品卡不可退款。", "礼品卡自购买之日起 3 年内有效。"]


def test_sentences_that_differ_in_a_figure_or_a_condition_are_not_repeats():
    from chatbot.checks import content_units
    from chatbot.evidence import repeats

    assert repeats(content_units("Yes, opened items can be returned within 14 days."), content_units("Opened items can be returned within 14 days of delivery."))
    assert not repeats(content_units("Opened items can be returned within 14 days."), content_units("Opened items can be returned within 30 days."))
    assert not repeats(content_units("未拆封商品可在 30 天内退货。"), content_units("已拆封商品可在 14 天内退货。"))


def test_a_sentence_about_the_other_case_goes_after_the_customers_case():
    """"I never opened it": the opened items' fee is nearer the question's words than the unopened
    items' rule, and would be quoted first."""
    import numpy as np

    from chatbot.checks import opened_case

    embedder = FakeEmbeddings()
    hits = [Hit(Document(page_content="Returns\nA restocking fee of 15% applies to opened items. Unopened items have no restocking fee.",
                         metadata={"title": "Returns"}), 0.9, 0)]
    question = "restocking fee opened items"  # the fake embedder's words: near the first sentence
    vector = np.asarray(embedder.embed_query(question))
    assert select(embedder, vector, hits, "en", limit=1)[0].text.startswith("A restocking fee")
    customer = "I never opened the kettle. Will you take a restocking fee?"
    assert opened_case(customer) == "unopened" and opened_case("拆开摆了二十天还能退吗？") == "opened" and opened_case("How long is delivery?") is None
    chosen = select(embedder, vector, hits, "en", limit=2, question=customer)
    assert [e.text for e in chosen] == ["Unopened items have no restocking fee.", "A restocking fee of 15% applies to opened items."]


def test_passages_about_the_other_case_go_after_the_customers_case():
    opened_faq = Hit(Document(page_content="Can I return an opened item?\nYes, within 14 days; a restocking fee of 15% is deducted.", metadata={"title": "FAQ"}), 0.9, 0)
    opened_policy = Hit(Document(page_content="Returns > Opened or used items\nA restocking fee of 15% of the item price is deducted.", metadata={"title": "Returns"}), 0.8, 1)
    unopened = Hit(Document(page_content="Returns > Unopened items\nUnopened items can be returned within 30 days for a full refund.", metadata={"title": "Returns"}), 0.7, 2)
    both = Hit(Document(page_content="Returns\nOpened and unopened items are returned through My orders.", metadata={"title": "Returns"}), 0.6, 3)
    hits = [opened_faq, opened_policy, both, unopened]
    assert case_first(hits, "I never opened my kettle. Is there a restocking fee?") == [both, unopened, opened_faq, opened_policy]
    assert case_first(hits, "我的水壶还没拆封，要扣手续费吗？") == [both, unopened, opened_faq, opened_policy]
    assert case_first(hits, "I opened it already, can I still return it?") == [opened_faq, opened_policy, both, unopened]
    assert case_first(hits, "How do I return an item?") == hits  # no case named: retrieval's order
