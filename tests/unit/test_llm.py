"""`OpeningTokens`: transformers' equivalent of the llama.cpp verdict grammar, on fake scores; `ContextPool`: which llama.cpp context a prompt gets."""

from __future__ import annotations

import threading

import torch

from chatbot.llm import ContextPool, OpeningTokens

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


EN = ["system\x00You are the assistant.", "user\x00[1] Returns within 30 days.\nQuestion: can I return it?"]
ZH = ["system\x00你是客服助手。", "user\x00[1] 30 天内可退货。\n问题：能退吗？"]


def _take(pool: ContextPool, prompt: list[str], timeout: float = 0):
    taken = pool.acquire(prompt, timeout=timeout)
    return taken[0] if taken else None


def test_a_context_goes_to_the_prompt_whose_opening_it_last_read():
    pool = ContextPool(["a", "b"])
    first = _take(pool, EN)
    second = _take(pool, ZH)
    pool.release(first)
    pool.release(second)
    # both free: each language gets back the context that holds its system text, whatever the order
    assert pool.acquire(ZH[:1] + ["user\x00another question"], timeout=0) == (second, ZH)
    assert pool.acquire(EN[:1] + ["user\x00another question"], timeout=0) == (first, EN)


def test_without_a_shared_system_text_the_context_free_the_longest_goes_first():
    pool = ContextPool(["a", "b"])
    a = _take(pool, EN)
    b = _take(pool, EN[:1] + ["user\x00x"])
    pool.release(b)
    pool.release(a)  # a shares a few characters of "system\x00" with ZH, b as many: neither holds its system text
    assert pool.acquire(ZH, timeout=0) == (b, EN[:1] + ["user\x00x"])  # with what it last read: not ZH's system text


def test_the_longer_shared_opening_wins_among_contexts_with_the_same_system_text():
    pool = ContextPool(["a", "b"])
    a = _take(pool, EN)
    b = _take(pool, EN[:1] + ["user\x00[1] Shipping takes 3 days."])
    pool.release(a)
    pool.release(b)
    assert _take(pool, EN[:1] + ["user\x00[1] Shipping takes 3 days.\nQuestion: how long?"]) == b


def test_no_free_context_within_the_wait_gives_none_and_a_release_wakes_a_waiter():
    pool = ContextPool(["a"])
    held = _take(pool, EN)
    assert pool.acquire(ZH, timeout=0.05) is None
    got = []
    waiter = threading.Thread(target=lambda: got.append(_take(pool, ZH, timeout=5)))
    waiter.start()
    pool.release(held)
    waiter.join(timeout=5)
    assert got == [held]
