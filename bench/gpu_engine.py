"""Many conversations on one GPU: the batched engine against a locked one-at-a-time `generate`, and
batch-1 decode against the memory-bandwidth limit.

    python bench/gpu_engine.py                                   # on a CUDA GPU: the full sweep
    python bench/gpu_engine.py --sizes 0.5B --concurrency 1,4 --prompt-tokens 128 --new-tokens 16   # CPU smoke run

The real Qwen2.5 architectures (0.5B, 1.5B, 7B) are built from their configs with random weights
(bf16 on CUDA, float32 on the CPU): decoding speed does not depend on the weights' values, and no
weights need to reach the machine. Every request has the same prompt length (a system prompt, three
passages and some history come to about 1,000 tokens) and a fixed number of new tokens (end of
sequence disabled). All requests of a sweep point arrive at once.

Per size and concurrency it prints output tokens/s, p50/p99 time to first token (TTFT) and p50/p99
time per output token (TPOT, after the first), for the engine and for the baseline: the same
requests served one at a time under a lock with `model.generate` (measured on the first
`--baseline-requests` of them, since its throughput does not depend on how many wait).
The bandwidth limit for batch-1 decode is bandwidth / weight bytes, with the bandwidth measured
by a device-to-device copy (or given with --bandwidth-gbs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen2.5 Instruct configurations (config.json of each model on the hub).
QWEN25 = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


def build_model(size: str, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**QWEN25[size], max_position_embeddings=32768, rope_theta=1_000_000.0)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_engine(engine, prompts: list[list[int]], new_tokens: int) -> dict:
    def one(prompt):
        started = time.perf_counter()
        stamps = [time.perf_counter() for _ in engine.generate(prompt, new_tokens)]
        return started, stamps

    began = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(one, prompts))
    return summarise(results, time.perf_counter() - began)


def token_stamps():
    """A `generate` streamer whose `times` are when each new token came (the prompt, put first, is not one)."""
    from transformers.generation.streamers import BaseStreamer

    class Stamps(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []
            self.prompt_seen = False

        def put(self, value):
            if self.prompt_seen:
                self.times.append(time.perf_counter())
            self.prompt_seen = True

        def end(self):
            pass

    return Stamps()


def run_locked_generate(model, prompts: list[list[int]], new_tokens: int) -> dict:
    import torch

    lock = threading.Lock()

    def one(prompt):
        started = time.perf_counter()
        streamer = token_stamps()
        with lock, torch.inference_mode():
            ids = torch.tensor([prompt], device=model.device)
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=streamer, pad_token_id=0, eos_token_id=None)
        return started, streamer.times

    began = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(one, prompts))
    return summarise(results, time.perf_counter() - began)


def compiled_generate_rate(model, prompt: list[int], new_tokens: int) -> float:
    """Batch-1 decode tokens/s of `generate` with a static KV cache, which transformers compiles
    (torch.compile, CUDA graphs) on a GPU; the first call, which compiles, is not timed."""
    import torch

    ids = torch.tensor([prompt], device=model.device)
    with torch.inference_mode():
        for _ in range(2):
            streamer = token_stamps()
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, cache_implementation="static",
                           streamer=streamer, pad_token_id=0, eos_token_id=None)
    decode = streamer.times[1:]  # after the first token
    return (len(decode) - 1) / (decode[-1] - decode[0])


def summarise(results: list[tuple[float, list[float]]], elapsed: float) -> dict:
    ttft = [stamps[0] - started for started, stamps in results if stamps]
    tpot = [(stamps[-1] - stamps[0]) / (len(stamps) - 1) for _, stamps in results if len(stamps) > 1]
    tokens = sum(len(stamps) for _, stamps in results)
    return {
        "tok_s": tokens / elapsed,
        "ttft_p50": statistics.median(ttft), "ttft_p99": percentile(ttft, 99),
        "tpot_p50": statistics.median(tpot) if tpot else float("nan"), "tpot_p99": percentile(tpot, 99) if tpot else float("nan"),
        "tokens": tokens,
    }


def measure_bandwidth_gbs(device: str) -> float:
    """Device memory bandwidth from a 1 GiB copy (read + write)."""
    import torch

    n = (1 << 30) // 4
    src = torch.empty(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    repeats = 10
    for _ in range(repeats):
        dst.copy_(src)
    sync()
    return 2 * src.numel() * 4 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    import torch

    from chatbot.engine import BatchedEngine

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.5B,1.5B,7B")
    parser.add_argument("--concurrency", default="1,8,32,64,128")
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--baseline-requests", type=int, default=4)
    parser.add_argument("--cuda-graphs", choices=["auto", "on", "off"], default="auto", help="the engine's CUDA graphs (auto: transformers decides)")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="the engine's tokens per step (default: transformers decides)")
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval, seconds: how often Python's threads may take the GIL from each other")
    parser.add_argument("--compiled-generate", action="store_true", help="batch-1 decode also by `generate` with a static cache, compiled (CUDA graphs)")
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="skip the copy measurement; e.g. 3350 for an H100 SXM")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bf16 matmuls are 6x slower on this CPU
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    bandwidth = args.bandwidth_gbs or measure_bandwidth_gbs(device)
    print(f"device: {name}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')}; bandwidth {bandwidth:.0f} GB/s "
          f"({'given' if args.bandwidth_gbs else 'measured by a 1 GiB copy'}); prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens\n")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    print("| model | concurrent | engine tok/s | TTFT p50 / p99 s | TPOT p50 / p99 ms | locked generate tok/s | its TTFT p50 / p99 s | its TPOT p50 ms | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes.split(","):
        model = build_model(size, device, dtype)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        generator = torch.Generator().manual_seed(1)
        vocab = model.config.vocab_size

        def prompts(n: int) -> list[list[int]]:
            return torch.randint(100, vocab - 100, (n, args.prompt_tokens), generator=generator).tolist()

        baseline = run_locked_generate(model, prompts(args.baseline_requests), args.new_tokens)
        graphs = {"auto": None, "on": True, "off": False}[args.cuda_graphs]
        engine = BatchedEngine(model, eos_token_ids=[], pad_token_id=0, max_new_tokens=args.new_tokens, max_requests=max(concurrency), cuda_graphs=graphs,
                               max_batch_tokens=args.max_batch_tokens)
        run_engine(engine, prompts(1), 4)  # warm-up
        for n in concurrency:
            r = run_engine(engine, prompts(n), args.new_tokens)
            print(f"| Qwen2.5-{size} | {n} | {r['tok_s']:.0f} | {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | {1000 * r['tpot_p50']:.1f} / {1000 * r['tpot_p99']:.1f} "
                  f"| {baseline['tok_s']:.0f} | {baseline['ttft_p50']:.2f} / {baseline['ttft_p99']:.2f} | {1000 * baseline['tpot_p50']:.1f} | {r['tok_s'] / baseline['tok_s']:.1f}x |", flush=True)
            if n == 1:
                limit = bandwidth * 1e9 / weight_bytes
                achieved = 1 / r["tpot_p50"]
                solo = 1 / baseline["tpot_p50"]
                batch1 = (size, weight_bytes, limit, achieved, solo)
        engine.close()
        if 1 in concurrency:
            size, wb, limit, achieved, solo = batch1
            compiled = ""
            if args.compiled_generate:
                rate = compiled_generate_rate(model, prompts(1)[0], args.new_tokens)
                compiled = f", static-cache compiled generate {rate:.1f} tok/s ({100 * rate / limit:.0f}%)"
            print(f"|  | batch-1 decode: engine {achieved:.1f} tok/s, generate {solo:.1f} tok/s; limit {limit:.1f} tok/s "
                  f"({wb / 1e9:.2f} GB of weights): {100 * achieved / limit:.0f}% / {100 * solo / limit:.0f}% of it{compiled} |  |  |  |  |  |  |  |", flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
