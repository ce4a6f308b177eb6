"""`OpeningTokens`: transformers' equivalent of the llama.cpp verdict grammar, on fake scores."""

from __future__ import annotations

import torch

from chatbot.llm import OpeningTokens

PROMPT = [9, 9, 9]
OPENINGS = [[1, 2], [1, 3, 4], [5]]  # e.g. "不可以，" and "不能，" share their first token


def _next(generated: list[int]) -> set[int]:
    """The tokens that may come next after `generated` (the finite scores left)."""
    scores = torch.zeros(1, 10)
    held = OpeningTokens(len(PROMPT), OPENINGS)(torch.tensor([PROMPT + generated]), scores)
    return {i for i in range(10) if torch.isfinite(held[0, i])}


def test_the_first_token_must_open_one_of_the_openings():
    assert _next([]) == {1, 5}


def test_a_shared_first_token_leaves_each_opening_that_it_starts():
    assert _next([1]) == {2, 3}
    assert _next([1, 3]) == {4}


def test_after_a_whole_opening_any_token_may_follow():
    assert _next([1, 2]) == set(range(10))
    assert _next([5, 7, 8]) == set(range(10))


def test_each_sequence_of_a_batch_is_held_by_itself():
    scores = torch.zeros(2, 10)
    held = OpeningTokens(len(PROMPT), OPENINGS)(torch.tensor([PROMPT + [1], PROMPT + [5]]), scores)
    assert {i for i in range(10) if torch.isfinite(held[0, i])} == {2, 3}
    assert torch.isfinite(held[1]).all()


def test_the_grammar_wants_words_after_a_verdict_and_takes_a_whole_one_alone():
    from chatbot.llm import MIN_AFTER_VERDICT, _opening_grammar, opening_gbnf

    gbnf = opening_gbnf(("Yes, ", "No, ", "Not stated."))
    assert gbnf == f'root ::= ("Yes, " | "No, ") [^\\n]{{{MIN_AFTER_VERDICT},}} | ("Not stated.")'
    assert opening_gbnf(("是的，",)) == f'root ::= ("是的，") [^\\n]{{{MIN_AFTER_VERDICT},}}'
    assert _opening_grammar(("Yes, ", "No, ", "Not stated.")) is not None  # llama.cpp parses it
