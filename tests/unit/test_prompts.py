"""Every template renders in both languages; a missing variable is an error, not a blank."""

import jinja2
import pytest

from chatbot.config import PROJECT_ROOT
from chatbot.prompts import Prompts

VARIABLES = {"business": "Shop", "passages": ["Passage one.", "Passage two."], "passage": "A passage.", "question": "Q?", "length": 3000, "limit": 2000}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_template_renders(lang):
    prompts = Prompts(PROJECT_ROOT / "prompts")
    assert set(prompts.names()) >= {"system", "user", "abstain", "empty_message", "message_too_long", "error"}
    for name in prompts.names():
        text = prompts.render(name, lang=lang, **VARIABLES)
        assert text and "{{" not in text
        has_han = any("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert has_han == (lang == "zh"), name


def test_the_user_message_numbers_the_passages_before_the_question():
    text = Prompts(PROJECT_ROOT / "prompts").render("user", lang="en", passages=["A.", "B."], question="Why?")
    assert text == "Passages:\n[1] A.\n[2] B.\n\nCustomer's question: Why?"


def test_a_missing_variable_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        Prompts(PROJECT_ROOT / "prompts").render("abstain", lang="en")
