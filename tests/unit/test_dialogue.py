"""The dialogue manager on fakes: the decision rule, the history budget, grounded prompts, bad input."""

import pytest
from langchain_core.documents import Document

from chatbot.calibration import Thresholds, turn_topic
from chatbot.dialogue import DialogueManager, abstain_reason, decide, trim_history
from chatbot.embeddings import FakeEmbeddings
from chatbot.errors import UserError
from chatbot.index import Hit
from chatbot.kb import KnowledgeBase
from chatbot.llm import FakeChatModel
from chatbot.prompts import Prompts
from chatbot.retrieval import Retrieval, Retriever


def _hit(score, lang="en", kind="faq", id="x"):
    return Hit(Document(page_content="q\na", metadata={"id": id, "lang": lang, "kind": kind}), score)


@pytest.mark.parametrize(
    ("faq", "topic", "lang", "expected"),
    [
        (_hit(0.95), 0.95, "en", "faq"),  # confident curated match
        (_hit(0.90), 0.50, "en", "faq"),  # the FAQ threshold is inclusive
        (_hit(0.95, lang="zh"), 0.95, "en", "generate"),  # a curated answer in another language is not given verbatim
        (_hit(0.89), 0.85, "en", "generate"),
        (_hit(0.85, id="top"), 0.85, "en", "faq"),  # the closest FAQ question is also the top passage: they agree
        (None, 0.80, "en", "generate"),  # the answer threshold is inclusive
        (_hit(0.89, id="top"), 0.79, "en", "abstain"),  # agreement on an off-topic turn is no answer
        (None, 0.84, "zh", "abstain"),  # each language has its own threshold
        (None, 0.85, "zh", "generate"),
        (None, -1.0, "zh", "abstain"),  # nothing retrieved
    ],
)
def test_decision_rule(faq, topic, lang, expected):
    passages = [_hit(topic, kind="section", id="top")] if topic > -1 else []
    retrieval = Retrieval(passages, faq, lang, 1.0, topic, topic=(topic,))
    assert decide(retrieval, Thresholds(0.90, {"en": 0.80, "zh": 0.85})) == expected


def test_a_curated_answer_about_another_case_is_not_given_verbatim_however_close_its_question():
    entry = Hit(Document(page_content="Can I return an opened item?\nYes, within 14 days; a 15% restocking fee applies.",
                         metadata={"id": "opened", "lang": "en", "kind": "faq", "question": "Can I return an opened item?"}), 0.95)
    passages = [Hit(entry.chunk, 0.9)]  # also the passage ranked first: the two retrievers agree
    thresholds = Thresholds(0.90, {"en": 0.80})
    for question, expected in [("I opened it once. Can I return it?", "faq"), ("It was never opened. Can I return it?", "generate"),
                               ("Can I return an unopened item?", "generate")]:
        retrieval = Retrieval(passages, entry, "en", 1.0, 0.9, topic=(0.9,), question=question)
        assert decide(retrieval, thresholds) == expected, question


def test_a_follow_up_is_about_the_knowledge_by_the_mean_of_its_question_alone_and_in_context():
    passages = [_hit(0.5, kind="section", id="top")]
    follow_up = Retrieval(passages, None, "en", 1.0, 0.5, topic=(0.70,), topic_in_context=(0.90,))
    assert turn_topic(follow_up) == pytest.approx(0.80)
    assert decide(follow_up, Thresholds(0.95, {"en": 0.80})) == "generate"
    assert decide(follow_up, Thresholds(0.95, {"en": 0.81})) == "abstain"
    # under a typical off-topic question's score by its own words, the conversation does not lift it
    assert decide(follow_up, Thresholds(0.95, {"en": 0.75})) == "generate"
    assert decide(follow_up, Thresholds(0.95, {"en": 0.75}, floor={"en": 0.72})) == "abstain"
    assert turn_topic(follow_up, floor=0.72) == pytest.approx(0.70)
    english = Retrieval(passages, None, "en", 1.0, 0.5, topic=(0.90, 0.50))  # both models read it: their mean
    assert turn_topic(english) == pytest.approx(0.70)
    chinese = Retrieval(passages, None, "zh", 1.0, 0.5, topic=(0.90, 0.0))  # the English model did not
    assert turn_topic(chinese) == pytest.approx(0.90)


def test_a_follow_up_nearer_a_shipped_off_topic_question_than_its_conversation_is_to_the_knowledge_is_not_lifted():
    passages = [_hit(0.8, kind="section", id="top")]
    weather = Retrieval(passages, None, "zh", 1.0, 0.5, topic=(0.85,), topic_in_context=(0.91,), off_topic=0.95)  # "明天天气怎么样？"
    materials = Retrieval(passages, None, "zh", 1.0, 0.5, topic=(0.85,), topic_in_context=(0.91,), off_topic=0.88)  # "那需要带什么材料？"
    assert turn_topic(weather) == pytest.approx(0.85)
    assert turn_topic(materials) == pytest.approx(0.88)
    assert decide(weather, Thresholds(0.95, {"zh": 0.87})) == "abstain"
    assert decide(materials, Thresholds(0.95, {"zh": 0.87})) == "generate"


def test_a_request_is_refused_unless_the_knowledge_covers_what_it_asks_without_the_names_in_it():
    passages = [_hit(0.9, kind="section", id="top")]
    thresholds = Thresholds(0.95, {"en": 0.70}, request=0.0, covered={"en": 0.85})
    cancel = Retrieval(passages, None, "en", 1.0, 0.9, request=0.01, topic=(0.90,))  # "I want to cancel my number": a passage says how
    assert abstain_reason(cancel, thresholds) is None and decide(cancel, thresholds) == "generate"
    # "book me a table at the Acorn": the venue's name scores high, the act without it does not
    book = Retrieval(passages, None, "en", 1.0, 0.9, request=0.01, topic=(0.90,), topic_unnamed=(0.60,), subjects=("Acorn",))
    assert abstain_reason(book, thresholds) == "request"
    assert abstain_reason(cancel, Thresholds(0.95, {"en": 0.70}, request=0.0)) == "request"  # no calibration: every request refused
    question = Retrieval(passages, None, "en", 1.0, 0.9, request=-0.01, topic=(0.60,))
    assert abstain_reason(question, thresholds) == "off_topic"


def test_a_request_that_a_curated_entry_answers_gets_the_entry():
    """"Can you add it to my order?" is phrased as a request; where the nearest FAQ question's entry
    is also the passage ranked first ("Can I add items to an order I have already placed?") and the
    turn is about this knowledge, the entry answers it. An off-topic request is still refused."""
    thresholds = Thresholds(0.95, {"en": 0.70}, request=0.0)
    entry = _hit(0.91, id="top")
    add = Retrieval([_hit(0.9, kind="faq", id="top")], entry, "en", 1.0, 0.9, request=0.01, topic=(0.90,))
    assert abstain_reason(add, thresholds) == "request" and decide(add, thresholds) == "faq"
    other = Retrieval([_hit(0.9, kind="section", id="other")], entry, "en", 1.0, 0.9, request=0.01, topic=(0.90,))
    assert decide(other, thresholds) == "abstain"  # the two retrievers disagree
    poem = Retrieval([_hit(0.6, kind="faq", id="top")], entry, "en", 1.0, 0.6, request=0.01, topic=(0.60,))
    assert decide(poem, thresholds) == "abstain"  # not about this knowledge


def _count_words(text):
    return len(text.split())


def test_history_keeps_the_newest_turns_within_budget_starting_on_a_user_turn():
    history = [
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six"},
        {"role": "assistant", "content": "seven eight"},
    ]
    assert trim_history(history, 100, _count_words) == history
    assert trim_history(history, 5, _count_words) == history[2:]
    assert trim_history(history, 4, _count_words) == history[2:]
    assert trim_history(history, 2, _count_words) == []  # never starts on an assistant turn
    assert trim_history([], 10, _count_words) == []


@pytest.fixture
def manager(settings):
    index = KnowledgeBase(settings, FakeEmbeddings()).open()
    return DialogueManager(settings, Retriever(index, FakeEmbeddings(), settings.retrieval), FakeChatModel(), Prompts(settings.prompts_dir))


def test_a_confident_faq_match_is_answered_verbatim_without_the_lm(manager):
    reply = manager.respond("How long does standard delivery take?").finish()
    assert reply.mode == "faq"
    assert reply.text == "Standard delivery takes 3 to 5 business days."
    assert [s.id for s in reply.sources] == ["en/faq.csv#0"]
    assert manager.model.calls == []
    assert set(reply.timings) == {"retrieve_ms", "first_token_ms", "total_ms"}


def test_a_chinese_question_gets_the_chinese_curated_answer(manager):
    reply = manager.respond("标准快递多久能送到？").finish()
    assert (reply.mode, reply.lang, reply.text) == ("faq", "zh", "标准快递需要3到5个工作日送达。")


def test_a_generated_answer_quotes_its_best_sentence_and_the_lm_sees_only_the_evidence(manager):
    reply = manager.respond("Can opened items be returned within 14 days?").finish()
    assert reply.mode == "generate" and reply.checks == []
    prompt = manager.model.calls[0][-1]["content"]
    sentences = [line.split("] ", 1)[1] for line in prompt.splitlines() if line.startswith("[")]
    assert 1 <= len(sentences) <= 3
    for sentence in sentences:  # each word for word from a cited passage
        assert any(sentence in s.text for s in reply.sources)
    top = reply.sources[0]
    assert top.id == "en/returns.md#2" and top.quote is not None
    quoted = top.text[top.quote[0] : top.quote[1]]
    assert quoted == sentences[0] == "Opened items can be returned within 14 days if undamaged; a 15% restocking fee applies."
    assert reply.text.startswith(f"From “Returns policy”: “{quoted}”\n\n")
    assert reply.text.endswith(f"Fake answer: {quoted}")  # it passed the checks, so it is shown
    assert reply.as_dict()["sources"][0]["quote"] == {"start": top.quote[0], "end": top.quote[1]}


def test_a_yes_no_question_holds_the_lm_to_a_verdict(manager):
    manager.respond("Can opened items be returned within 14 days?").finish()
    manager.respond("How long do I have to return opened items?").finish()
    assert manager.model.starts == [("Yes, ", "No, ", "Not stated."), ()]


@pytest.mark.parametrize(
    ("answer", "failed"),
    [
        ("Yes, within 60 days.", ["quantity"]),  # no such number in the evidence
        ("Yes, only unused items, within 14 days.", ["condition"]),
        ("Not stated.", ["not_stated"]),
    ],
)
def test_an_answer_that_fails_a_check_is_never_shown_the_quote_stands_alone(manager, answer, failed):
    manager.model.reply = answer
    reply = manager.respond("Can opened items be returned within 14 days?").finish()
    assert reply.checks == failed
    assert answer not in reply.text
    assert reply.text.startswith("From “Returns policy”: “Opened items can be returned within 14 days")
    assert reply.text.endswith("If it does not answer your question, I can connect you with a person from our team.")
    assert "\n\nAlso from “" in reply.text  # the other evidence sentences, quoted too


def test_a_yes_about_what_no_passage_names_is_never_shown(manager):
    manager.model.reply = "Yes, opened sofas can be returned within 14 days."
    reply = manager.respond("Can opened sofas be returned within 14 days?").finish()
    assert reply.mode == "generate" and reply.checks == ["unknown"]  # no passage of the knowledge says "sofa"
    assert "sofas can be returned" not in reply.text and reply.text.startswith("From “Returns policy”: “Opened items")


def test_an_unrelated_question_abstains_in_the_users_language_and_offers_a_person(manager):
    en = manager.respond("What is the capital of France?").finish()
    zh = manager.respond("法国的首都是哪里？").finish()
    assert (en.mode, en.sources) == ("abstain", []) and "connect you with a person" in en.text
    assert (zh.mode, zh.lang) == ("abstain", "zh") and "人工客服" in zh.text
    assert manager.model.calls == []


def test_a_follow_up_is_retrieved_with_the_conversation_before_it(manager):
    history = [
        {"role": "user", "content": "What is the returns policy for opened items?"},
        {"role": "assistant", "content": "Within 14 days."},
    ]
    followed = manager.retriever.retrieve("and the restocking fee?", history)
    assert followed.subjects == ("Returns policy",)  # the title the conversation named
    assert followed.passages[0].chunk.metadata["id"] == "en/returns.md#2"
    unnamed = [{"role": "user", "content": "Can opened items be sent back?"}, {"role": "assistant", "content": "Yes."}]
    unopened = [{"role": "user", "content": "Can unopened items be sent back?"}, {"role": "assistant", "content": "Yes."}]
    elsewhere = manager.retriever.retrieve("and within how many days?", unopened)
    with_context = manager.retriever.retrieve("and within how many days?", unnamed)
    assert with_context.subjects == ()
    assert with_context.passages[0].chunk.metadata["id"] == "en/returns.md#2"  # "Opened items ... within 14 days"
    assert elsewhere.passages[0].chunk.metadata["id"] != "en/returns.md#2"  # the other context, another passage
    reply = manager.respond("and the restocking fee?", history).finish()
    assert reply.sources and reply.sources[0].id == "en/returns.md#2"
    assert manager.model.calls[-1][1:2] == history[:1]  # the customer's earlier turn is in the prompt, the question last


def test_the_history_in_the_prompt_is_trimmed_to_budget_never_the_question(manager):
    long_turn = "word " * 250
    history = [{"role": "user", "content": long_turn}, {"role": "assistant", "content": long_turn}] * 3
    manager.respond("Opened items restocking fee?", history).finish()
    prompt = manager.model.calls[-1]
    assert len(prompt) == 2  # budget 200 < 250 words: every old turn dropped
    assert prompt[-1]["content"].endswith("Opened items restocking fee?")


@pytest.mark.parametrize(("kept", "roles"), [("both", ["user", "assistant"]), ("user", ["user"]), ("none", [])])
def test_the_prompt_carries_the_earlier_turns_that_prompt_history_keeps(manager, kept, roles):
    manager.settings.dialogue.prompt_history = kept
    history = [{"role": "user", "content": "Do you sell kettles?"}, {"role": "assistant", "content": "Yes, three models."}]
    manager.respond("Opened items restocking fee?", history).finish()
    prompt = manager.model.calls[-1]
    assert [m["role"] for m in prompt[1:-1]] == roles and prompt[0]["role"] == "system"
    assert prompt[-1]["content"].endswith("Opened items restocking fee?")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "Your message is empty"),
        ("   \n\t ", "Your message is empty"),
        ("x" * 2001, "Your message is 2001 characters long, over the limit of 2000"),
        ("退" * 20000, "您的消息有 20000 个字符，超过了 2000 个字符的上限"),
    ],
)
def test_bad_messages_get_a_clear_reply_in_the_users_language(manager, message, expected):
    with pytest.raises(UserError, match=expected):
        manager.check(message, [])  # what the chat page asks before it stores or shows the turn
    with pytest.raises(UserError, match=expected):
        manager.respond(message)
    assert manager.model.calls == []
    assert manager.check(f"  {message.strip()[:5] or 'hi'} ", []) == (message.strip()[:5] or "hi")


def test_a_model_failure_mid_answer_becomes_an_apology_after_the_quote(manager):
    def broken(messages, max_new_tokens=None, starts=()):
        yield "Partial"
        raise RuntimeError("boom")

    manager.model.stream = broken
    reply = manager.respond("Can opened items be returned within 14 days?").finish()
    assert reply.text.startswith("From “Returns policy”") and "something went wrong" in reply.text
    assert "Partial" not in reply.text and reply.checks == ["error"]


def test_a_busy_model_gets_the_quote_at_once_in_the_users_language(manager):
    from chatbot.errors import ModelBusyError

    def busy(messages, max_new_tokens=None, starts=()):
        raise ModelBusyError("the model is serving 64 requests, its limit")
        yield  # a generator, like every ChatModel.stream

    manager.model.stream = busy
    reply = manager.respond("Can opened items be returned within 14 days?").finish()
    assert reply.mode == "generate" and "answering many customers right now" in reply.text
    top = reply.sources[0]
    assert f"“{top.text[top.quote[0] : top.quote[1]]}”" in reply.text and reply.checks == ["busy"]  # the sentence itself, cited below


def test_a_question_in_another_language_does_not_track_a_document_named_earlier(manager):
    history = [{"role": "user", "content": "What does the Returns policy say about opened items?"}, {"role": "assistant", "content": "Opened items: 14 days."}]
    assert manager.retriever.subjects("Can I return it?", history, "en") == ("Returns policy",)
    assert manager.retriever.subjects("标准快递多久能送到？", history, "zh") == ()
    assert manager.respond("标准快递多久能送到？", history).finish().sources[0].source == "zh/faq.csv"


def test_a_request_to_act_is_told_that_a_person_can_do_it(settings, monkeypatch):
    settings.retrieval.request_threshold = 0.0
    index = KnowledgeBase(settings, FakeEmbeddings()).open()
    manager = DialogueManager(settings, Retriever(index, FakeEmbeddings(), settings.retrieval), FakeChatModel(), Prompts(settings.prompts_dir))
    monkeypatch.setattr(manager.retriever, "turns", type("Forms", (), {"score": staticmethod(lambda vector: 0.5), "probes": None})())
    reply = manager.respond("Please cancel my order 4821.").finish()
    assert reply.mode == "abstain" and not reply.sources
    assert reply.text.startswith("I can't do that for you here") and "connect you" in reply.text
    # a request about what this knowledge covers also gets its nearest sentence, quoted with its source
    reply = manager.respond("Return my opened items within 14 days for me.").finish()
    assert reply.mode == "abstain" and len(reply.sources) == 1 and reply.text.startswith(reply.quote)
    top = reply.sources[0]
    assert reply.quote.endswith(f"“{top.text[top.quote[0] : top.quote[1]]}”") and "14 days" in top.text[top.quote[0] : top.quote[1]]
    assert reply.text.endswith("shall I connect you?")
    # a sentence further from the request than the topic threshold (one of the passages an earlier
    # turn brought) is not quoted: the line alone
    import dataclasses

    import chatbot.dialogue as dialogue

    select = dialogue.select
    monkeypatch.setattr(dialogue, "select", lambda *a, **k: [dataclasses.replace(e, score=-1.0) for e in select(*a, **k)])
    reply = manager.respond("Return my opened items within 14 days for me.").finish()
    assert reply.mode == "abstain" and not reply.sources and reply.text.startswith("I can't do that for you here")


def test_a_question_in_another_language_is_searched_without_the_conversation_before_it(manager):
    chinese = [{"role": "user", "content": "烤面包机保修几年？"}, {"role": "assistant", "content": "小型厨房电器保修 2 年。"}]
    switched = manager.retriever.retrieve("Can opened items be returned within 14 days?", chinese)
    alone = manager.retriever.retrieve("Can opened items be returned within 14 days?")
    assert switched.topic_in_context == alone.topic_in_context  # not lifted by the Chinese turns
    assert [h.chunk.metadata["id"] for h in switched.passages] == [h.chunk.metadata["id"] for h in alone.passages]
