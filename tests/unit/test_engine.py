"""The batched engine on a tiny random-weight Qwen2: batched greedy output equals solo `generate`
token for token, cancellation frees the slot, admission control refuses past the bound."""

from __future__ import annotations

import threading
import time

import pytest

from chatbot.errors import ModelBusyError

torch = pytest.importorskip("torch")
PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18], [20], [30, 31, 32, 33]]


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
    )
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture
def engine(model):
    from chatbot.engine import BatchedEngine

    engine = BatchedEngine(model, eos_token_ids=[], pad_token_id=0, max_new_tokens=12, max_requests=3, kv_cache_blocks=16, max_batch_tokens=256)
    yield engine
    engine.close()


def _solo(model, prompt, n):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=None)
    return out[0, len(prompt):].tolist()


def test_concurrent_batched_greedy_outputs_equal_solo_generate(model, engine):
    from chatbot.engine import BatchedEngine

    wide = BatchedEngine(model, eos_token_ids=[], pad_token_id=0, max_new_tokens=12, max_requests=len(PROMPTS), kv_cache_blocks=16, max_batch_tokens=256)
    results: dict[int, list[int]] = {}
    start = threading.Barrier(len(PROMPTS))

    def run(i):
        start.wait()
        results[i] = list(wide.generate(PROMPTS[i], 12))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wide.close()
    assert [results[i] for i in range(len(PROMPTS))] == [_solo(model, p, 12) for p in PROMPTS]


def test_a_request_whose_reader_goes_away_is_cancelled_and_frees_its_slot(engine):
    stream = engine.generate(PROMPTS[0], 400)
    next(stream)
    assert engine.in_flight == 1
    stream.close()  # the client went away
    assert engine.in_flight == 0
    scheduler = engine._manager.batch_processor.scheduler
    deadline = time.monotonic() + 10
    while (scheduler.active_requests or scheduler.waiting_requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scheduler.active_requests and not scheduler.waiting_requests
    assert len(list(engine.generate(PROMPTS[1], 5))) == 5  # the engine goes on


def test_admission_control_refuses_past_the_bound_and_admits_again_after(engine):
    streams = [engine.generate(p, 300) for p in PROMPTS[:3]]
    for s in streams:
        next(s)
    with pytest.raises(ModelBusyError, match="serving 3 requests, its limit"):
        next(engine.generate(PROMPTS[3], 5))
    streams[0].close()
    assert len(list(engine.generate(PROMPTS[3], 4))) == 4
    for s in streams[1:]:
        s.close()
    assert engine.in_flight == 0
