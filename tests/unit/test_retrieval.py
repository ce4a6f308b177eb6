"""Paired embedders, score fusion, the subject's name left out of the search, and the form of a turn."""

import numpy as np
import pytest

from chatbot.calibration import Thresholds
from chatbot.dialogue import decide
from chatbot.embeddings import FakeEmbeddings, PairedEmbeddings, embedding_parts
from chatbot.errors import ConfigError
from chatbot.index import KnowledgeIndex
from chatbot.lexical import tokenize
from chatbot.retrieval import Retrieval, Retriever, _standardised, titles_name_documents
from chatbot.turns import TurnForms
from chatbot.config import load_settings
from langchain_core.documents import Document


def test_a_paired_row_is_both_models_side_by_side_and_its_inner_product_the_mean_cosine():
    first, english = FakeEmbeddings(dims=32), FakeEmbeddings(dims=16)
    paired = PairedEmbeddings(first, english)
    a, b = "Do you ship parcels abroad?", "We ship parcels to most countries abroad."
    va, vb = (np.asarray(v) for v in paired.embed_documents([a, b]))
    assert paired.parts == [(0, 32), (32, 48)] == embedding_parts(paired, 48)
    cos_first = float(np.dot(first.embed_query(a), first.embed_query(b)))
    cos_english = float(np.dot(english.embed_query(a), english.embed_query(b)))
    assert float(va @ vb) == pytest.approx((cos_first + cos_english) / 2, abs=1e-6)
    assert embedding_parts(first, 32) == [(0, 32)]


class _Counting(FakeEmbeddings):
    def __init__(self, dims):
        super().__init__(dims)
        self.read: list[str] = []

    def embed_documents(self, texts):
        self.read.extend(texts)
        return super().embed_documents(texts)


def test_a_text_that_is_not_english_gets_nothing_from_the_english_model_nor_is_given_to_it():
    english_model = _Counting(dims=16)
    paired = PairedEmbeddings(FakeEmbeddings(dims=32), english_model)
    paired.parts  # noqa: B018 (measures the models' dimensions once)
    english_model.read.clear()
    chinese = np.asarray(paired.embed_query("可以退货吗？"))
    english = np.asarray(paired.embed_query("Can I return it?"))
    assert not chinese[32:].any() and chinese[:32].any()
    assert english[32:].any()
    rows = np.asarray(paired.embed_documents(["未开封的商品可以在30天内退货。", "Unopened items can be returned within 30 days."]))
    assert not rows[0, 32:].any() and rows[1, 32:].any() and rows[0, :32].any()
    assert english_model.read == ["Can I return it?", "Unopened items can be returned within 30 days."]


def test_scores_are_standardised_over_the_candidates():
    assert _standardised(np.asarray([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert _standardised(np.asarray([2.0, 2.0])).tolist() == [0.0, 0.0]  # no spread: no say in the fusion


def _index(texts_by_title: dict[str, list[str]], embedder) -> KnowledgeIndex:
    chunks = [
        Document(page_content=f"{title}\n{text}", metadata={"id": f"{title}#{n}", "title": title, "heading": title, "source": "t", "kind": "section", "lang": "en"})
        for title, texts in texts_by_title.items() for n, text in enumerate(texts)
    ]
    return KnowledgeIndex.build(chunks, embedder)


def test_inside_a_subject_the_question_is_searched_without_the_subjects_name():
    embedder = PairedEmbeddings(FakeEmbeddings(dims=64), FakeEmbeddings(dims=32))
    index = _index({
        "ACORN GUEST HOUSE": ["The Acorn Guest House has free parking.", "Our room was quiet at night.", "Breakfast at Acorn Guest House is at 8."],
        "BRIDGE HOTEL": ["The bridge hotel has a gym."],
    }, embedder)
    retriever = Retriever(index, embedder, load_settings("test", environ={}).retrieval)
    assert retriever.without_titles("Is the Acorn Guest House quiet?", ("ACORN GUEST HOUSE",)) == "is the quiet?"
    assert retriever.without_titles("Quiet rooms at acorn guest-house?", ("ACORN GUEST HOUSE",)) == "quiet rooms at ?"
    found = retriever.retrieve("Is the Acorn Guest House quiet?")
    assert found.subjects == ("ACORN GUEST HOUSE",)
    assert found.passages[0].chunk.metadata["id"] == "ACORN GUEST HOUSE#1"  # not a passage that repeats the name
    assert {h.chunk.metadata["title"] for h in found.passages} == {"ACORN GUEST HOUSE"}


def test_a_turn_that_names_two_titles_searches_both_and_a_name_inside_a_longer_one_is_not_a_second():
    embedder = PairedEmbeddings(FakeEmbeddings(dims=64), FakeEmbeddings(dims=32))
    index = _index({
        "ACORN GUEST HOUSE": ["Our room was quiet at night."],
        "BRIDGE HOTEL": ["The gym opens at six."],
        "BRIDGE HOTEL AND SPA": ["The spa has a sauna."],
        "CITY CAFE": ["Coffee all day."],
    }, embedder)
    retriever = Retriever(index, embedder, load_settings("test", environ={}).retrieval)
    history = [{"role": "user", "content": "I'm torn between the Acorn Guest House and the Bridge Hotel."}, {"role": "assistant", "content": "Both are nice."}]
    found = retriever.retrieve("Which one has a gym?", history)
    assert found.subjects == ("ACORN GUEST HOUSE", "BRIDGE HOTEL")
    assert {h.chunk.metadata["title"] for h in found.passages} == {"ACORN GUEST HOUSE", "BRIDGE HOTEL"}
    assert found.passages[0].chunk.metadata["id"] == "BRIDGE HOTEL#0"
    assert retriever.subjects("Does the Bridge Hotel and Spa have a sauna?", []) == ("BRIDGE HOTEL AND SPA",)
    assert retriever.subjects("And the Acorn Guest House?", history) == ("ACORN GUEST HOUSE",)  # the newest turn that names one


def test_the_form_of_a_turn_is_scored_against_the_example_turns(tmp_path):
    examples = tmp_path / "turns.yaml"
    examples.write_text(
        "act:\n  - book a table tonight\n  - cancel my order now\n  - book two tickets now\n  - thanks goodbye\n"
        "question:\n  - do you ship abroad\n  - is parking free\n  - how long is delivery\n  - are pets allowed\n",
        encoding="utf-8",
    )
    forms = TurnForms.load(examples, FakeEmbeddings(), 3, cache_dir=tmp_path / "cache")
    embed = FakeEmbeddings().embed_query
    assert forms.score(np.asarray(embed("please book a table for two"))) > 0 > forms.score(np.asarray(embed("is parking free at night")))
    again = TurnForms.load(examples, FakeEmbeddings(), 3, cache_dir=tmp_path / "cache")  # from the cache
    assert np.array_equal(again.act, forms.act)
    examples.write_text("act: [only one]\nquestion: [a, b, c]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="at least 3 examples"):
        TurnForms.load(examples, FakeEmbeddings(), 3)


def test_a_request_abstains_unless_a_curated_faq_matches_it_closely():
    settings = load_settings("test", environ={})
    embedder = FakeEmbeddings()
    index = _index({"Shop": ["Parking is free at the shop."]}, embedder)
    retrieval = Retriever(index, embedder, settings.retrieval).retrieve("Is parking free?")
    request = Retrieval(retrieval.passages, None, "en", 1.0, relevance=0.9, request=0.02, topic=(0.9,))
    assert decide(request, Thresholds(0.9, {"en": 0.5})) == "generate"  # no form check configured
    assert decide(request, Thresholds(0.9, {"en": 0.5}, request=0.01)) == "abstain"
    assert decide(request, Thresholds(0.9, {"en": 0.5}, request=0.03)) == "generate"


def test_the_bm25_baseline_ranks_by_words_alone_and_the_dense_one_by_embeddings_alone():
    embedder = FakeEmbeddings(dims=64)
    index = _index({"SHOP": ["Parcels ship abroad in five days.", "Shipping shipping shipping abroad abroad.", "Gift cards never expire."]}, embedder)
    settings = load_settings("test", environ={}).retrieval
    question = "Do parcels ship abroad?"
    by_words = Retriever(index, embedder, settings.model_copy(update={"fusion": "bm25", "subject_tracking": False})).retrieve(question)
    lexical = index.bm25_scores(tokenize(question))
    assert [h.row for h in by_words.passages] == sorted(range(3), key=lambda r: -lexical[r])
    by_meaning = Retriever(index, embedder, settings.model_copy(update={"fusion": "dense", "subject_tracking": False})).retrieve(question)
    cosines = np.asarray(index.vectors) @ np.asarray(embedder.embed_query(question.lower()))
    assert [h.row for h in by_meaning.passages] == sorted(range(3), key=lambda r: -cosines[r])


def test_among_statements_a_question_and_answer_passage_is_scored_by_its_answer_too():
    embedder = FakeEmbeddings(dims=256)
    faq = "Do you offer rooms with a view? Ask for an upper floor."
    review = "The rooms were spacious."
    question = "Do you offer spacious rooms with a view?"
    settings = load_settings("test", environ={}).retrieval.model_copy(update={"fusion": "dense", "subject_tracking": False})

    def ranked(texts):
        index = _index({"HOTEL": texts}, embedder)
        whole = np.asarray(index.vectors) @ np.asarray(embedder.embed_query(question.lower()))
        return [texts[h.row] for h in Retriever(index, embedder, settings).retrieve(question).passages], whole

    order, whole = ranked([faq, review])
    assert whole[0] > whole[1]  # as a whole the FAQ pair is nearer: its question shares the asking words
    assert order == [review, faq]  # its answer says nothing of spacious rooms
    # Among FAQ pairs alone every passage has the form, and they are ranked whole.
    service = "Do you offer rooms with room service? Yes, meals are brought up until midnight."
    order, whole = ranked([service, faq])
    assert whole[1] > whole[0] and order == [faq, service]


def test_a_follow_up_that_names_no_title_is_ranked_on_its_own_too():
    embedder = FakeEmbeddings(dims=256)
    texts = ["Express delivery costs USD 14.95 and arrives in 1 to 2 days.", "Opened items can be returned within 14 days; a 15% fee applies.",
             "Gift cards never expire.", "Standard delivery is free over USD 50."]
    index = _index({"": texts}, embedder)
    history = [{"role": "user", "content": "How much does express delivery cost? Is express delivery fast?"},
               {"role": "assistant", "content": "Express delivery costs USD 14.95."}]
    settings = load_settings("test", environ={}).retrieval.model_copy(update={"subject_tracking": False})

    def first(question_weight):
        retriever = Retriever(index, embedder, settings.model_copy(update={"question_weight": question_weight}))
        return texts[retriever.retrieve("And opened items?", history).passages[0].row]

    assert first(0.0) == texts[0]  # the history's words alone keep it on express delivery
    assert first(1.0) == texts[1]  # its own ranking beside them: the topic it changed to


def _first_follow_up(by_title: dict[str, list[str]], history: list[dict], question: str, enough: dict | None = None, **retrieval) -> str:
    """The text of the first passage for a follow-up, subject tracking off, with `retrieval` settings
    (and `enough`, the topic thresholds, as the chat passes them)."""
    embedder = FakeEmbeddings(dims=256)
    index = _index(by_title, embedder)
    settings = load_settings("test", environ={}).retrieval.model_copy(update={"subject_tracking": False, **retrieval})
    return index.chunks[Retriever(index, embedder, settings).retrieve(question, history, enough=enough).passages[0].row].page_content


def test_a_follow_up_that_names_no_title_stays_on_the_document_its_conversation_is_about():
    by_title = {"Hobsons House": ["Hobsons House is a guest house in the west.", "The rooms at Hobsons House are quiet.", "Breakfast is served until ten."],
                "Acorn Lodge": ["Acorn Lodge is a guest house in the north.", "The rooms are large.", "Breakfast is served until nine every day."]}
    history = [{"role": "user", "content": "Are the rooms at Hobsons House quiet?"},
               {"role": "assistant", "content": "Yes: the rooms at Hobsons House, a guest house in the west, are quiet."}]

    def first(title_weight):
        return _first_follow_up(by_title, history, "is breakfast served every day?", title_weight=title_weight)

    assert first(0.0) == "Acorn Lodge\nBreakfast is served until nine every day."  # the question's words alone pick the other one
    assert first(2.0) == "Hobsons House\nBreakfast is served until ten."  # the conversation's document (no change of topic at the default gap)


def test_the_title_score_is_each_passage_s_best_in_its_title_and_none_without_groups():
    embedder = FakeEmbeddings(dims=32)
    index = _index({"A": ["a one", "a two"], "B": ["b one"], "": ["loose one", "loose two"]}, embedder)
    retriever = Retriever(index, embedder, load_settings("test", environ={}).retrieval)
    rows = np.asarray([0, 1, 2, 3, 4])
    assert retriever._title_best(rows, np.asarray([0.1, 0.5, 0.3, 0.2, 0.4])).tolist() == [0.5, 0.5, 0.3, 0.2, 0.4]
    assert retriever._title_best(np.asarray([0, 2, 3]), np.asarray([0.1, 0.3, 0.2])) is None  # every title alone: no say


POLICIES = {"Returns policy": ["Items can be returned within 30 days.", "Opened items can be returned within 14 days for a fee.", "Refunds are paid in 5 days."],
            "Warranty policy": ["Every lamp has a two year warranty.", "The warranty covers faults, not breakage.", "Claims need the receipt."]}
AFTER_RETURNS = [{"role": "user", "content": "Can opened items be returned?"},
                 {"role": "assistant", "content": "Opened items can be returned within 14 days for a fee."}]


def test_a_follow_up_that_points_at_another_document_on_its_own_is_a_change_of_topic():

    def first(question, gap):
        return _first_follow_up(POLICIES, AFTER_RETURNS, question, title_weight=2.0, topic_change_gap=gap)

    assert first("how long is the lamp warranty?", None).startswith("Returns policy")  # held to the conversation's document
    assert first("how long is the lamp warranty?", 1.5) == "Warranty policy\nEvery lamp has a two year warranty."


def test_only_a_question_on_topic_by_its_own_words_can_change_the_topic():

    def first(threshold):
        return _first_follow_up(POLICIES, AFTER_RETURNS, "how long is the lamp warranty?", {"en": threshold}, title_weight=2.0, topic_change_gap=1.5)

    assert first(-1.0) == "Warranty policy\nEvery lamp has a two year warranty."  # about this knowledge on its own: it may change topic
    assert first(1.01).startswith("Returns policy")  # too generic on its own ("那需要带什么材料？"): read in its conversation


def test_subject_tracking_is_on_where_titles_are_names_that_their_own_passages_use():
    embedder = FakeEmbeddings(dims=64)
    venues = _index({
        "ACORN GUEST HOUSE": ["The Acorn Guest House has free parking.", "Breakfast at Acorn Guest House is at 8."],
        "BRIDGE HOTEL": ["The Bridge Hotel has a gym.", "Rooms are quiet."],
    }, embedder)
    assert titles_name_documents(venues) == {"passages_naming_a_title": 3, "own_title_share": 1.0, "on": True}
    sections = _index({  # help-centre sections: their titles are words that the other sections use
        "Printing labels": ["Labels print from the orders page.", "Billing plans decide how many labels you print a month."],
        "Billing plans": ["Printing labels in bulk needs the Pro plan.", "Invoices are sent monthly."],
    }, embedder)
    assert titles_name_documents(sections) == {"passages_naming_a_title": 2, "own_title_share": 0.0, "on": False}
    unnamed = _index({"Returns": ["Items can be returned within 30 days."], "Warranty": ["Lamps have a two year warranty."]}, embedder)
    assert titles_name_documents(unnamed)["on"] is True  # no evidence either way: the setting decides
    sections.manifest["calibration"] = {"subject_tracking": titles_name_documents(sections)}
    retriever = Retriever(sections, embedder, load_settings("test", environ={}).retrieval)
    assert retriever.retrieve("How do I start printing labels?").subjects == ()  # the calibration turned tracking off


def test_a_question_naming_its_subject_is_also_scored_without_the_name():
    embedder = FakeEmbeddings(dims=256)
    index = _index({
        "ACORN GUEST HOUSE": ["The Acorn Guest House has free parking.", "Breakfast at Acorn Guest House is at 8."],
        "BRIDGE HOTEL": ["The Bridge Hotel has a gym."],
    }, embedder)
    retriever = Retriever(index, embedder, load_settings("test", environ={}).retrieval)
    named = retriever.retrieve("Book me a table at the Acorn Guest House")
    assert named.subjects == ("ACORN GUEST HOUSE",)
    assert named.topic_unnamed[0] < named.topic[0]  # the venue's name is what matched; the act is not described
    unnamed = retriever.retrieve("Is breakfast served early?")
    assert unnamed.subjects == () and unnamed.topic_unnamed == unnamed.topic
