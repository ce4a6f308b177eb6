"""The evidence sentences of an answer (`chatbot/evidence.py`): offsets into the passage, best first."""

from langchain_core.documents import Document

from chatbot.embeddings import FakeEmbeddings
from chatbot.evidence import select, sentence_spans
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
