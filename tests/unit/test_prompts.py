"""Every template renders in both languages; a missing variable is an error, not a blank."""

import jinja2
import pytest

from chatbot.config import PROJECT_ROOT
from chatbot.prompts import Prompts

VARIABLES = {"business": "Shop", "sentences": ["Sentence one.", "Sentence two."], "title": "Returns", "quote": "A sentence.", "question": "Q?", "length": 3000, "limit": 2000, "wait": 12}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_template_renders(lang):
    prompts = Prompts(PROJECT_ROOT / "prompts")
    assert set(prompts.names()) >= {"system", "user", "abstain", "empty_message", "message_too_long", "error"}
    for name in prompts.names():
        text = prompts.render(name, lang=lang, **VARIABLES)
        assert text and "{{" not in text
        has_han = any("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert has_han == (lang == "zh"), name


def test_the_user_message_numbers_the_sentences_before_the_question():
    text = Prompts(PROJECT_ROOT / "prompts").render("user", lang="en", sentences=["A.", "B."], question="Why?")
    assert text == "Sentences from our information:\n[1] A.\n[2] B.\n\nCustomer's question: Why?"


def test_a_quote_is_marked_as_one_with_its_source_in_both_languages():
    prompts = Prompts(PROJECT_ROOT / "prompts")
    assert prompts.render("quote", lang="en", title="Returns policy", quote="Opened items: 14 days.") == "From “Returns policy”: “Opened items: 14 days.”"
    assert prompts.render("quote", lang="zh", title="退货政策", quote="已拆封的商品可在14天内退货。") == "《退货政策》中写道：“已拆封的商品可在14天内退货。”"


def test_a_missing_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        Prompts(PROJECT_ROOT / "prompts").render("abstain", lang="en")
