"""GPU throughput, latency and parity of E5Encoder against the model-card loop, side by side.

Everything is measured in one process on one GPU, so the figures are comparable as ratios:

- (a) the model card loop in bf16, batch 16, input order;
- (b) the same loop sorted by length, batch 32 (sentence-transformers style);
- (c) ``E5Encoder`` as users call it;
- the bf16 GEMM rate at the model's linear shapes, and the ceiling it implies in tokens/s
  (2 x non-embedding parameters FLOPs per token);
- single short-query latency p50 over 50 calls; peak GPU memory; parity of (c) against an
  fp32 run of the reference on a subset (minimum cosine);
- the levers, each measured on its own in the same run (``--variants``): ``masked`` (the
  forward pass with an attention mask, as before the mask-free path), ``compiled``
  (``compile=True``; its warm-up is reported apart), ``graphs`` (``cuda_graphs=True``, query
  latency only); plus the corpus's tokenization time and padding fraction under the
  encoder's batch plan.

The model is the e5-mistral architecture with random bf16 weights (no hub). Run on a GPU:

    python benchmarks/gpu_throughput.py                 # writes benchmarks/results/<gpu>-<date>.json
    python benchmarks/gpu_throughput.py --config tiny --device cpu --texts 64   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the model-card reference lives in tests/

ARCH = {
    "e5-mistral": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def make_corpus(n: int, seed: int = 0) -> list[str]:
    """50 % of 12-96 tokens, 35 % of 96-512, 15 % of 512-2048 (about one token per word)."""
    rng = np.random.default_rng(seed)
    words = [
        "alpha",
        "river",
        "compute",
        "summit",
        "protein",
        "vector",
        "garden",
        "signal",
        "ledger",
        "orbit",
    ]
    texts = []
    for _ in range(n):
        bucket = rng.random()
        lo, hi = (12, 96) if bucket < 0.5 else (96, 512) if bucket < 0.85 else (512, 2048)
        length = int(rng.integers(lo, hi))
        texts.append(" ".join(rng.choice(words, size=length)))
    return texts


def build_model_dir(config: str, root: Path) -> Path:
    from transformers import MistralConfig, MistralModel

    from e5_integrations.testing import TinyModelSpec, build_tiny_model

    if config == "tiny":
        return build_tiny_model(root / "tiny", TinyModelSpec())
    out = build_tiny_model(root / "arch", TinyModelSpec())  # tokenizer files; weights replaced below
    cfg = MistralConfig(vocab_size=32000, max_position_embeddings=32768, **ARCH[config])
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = MistralModel(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def card_loop(model, tokenizer, texts: list[str], batch: int, device: torch.device, sort: bool) -> float:
    """The model card's tokenization/pooling, in batches; returns seconds."""
    from tests.model_card_reference import last_token_pool

    order = np.argsort([-len(t) for t in texts]) if sort else np.arange(len(texts))
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = [texts[j] for j in order[i : i + batch]]
        bd = tokenizer(chunk, max_length=4095, return_attention_mask=False, padding=False, truncation=True)
        bd["input_ids"] = [ids + [tokenizer.eos_token_id] for ids in bd["input_ids"]]
        bd = tokenizer.pad(bd, padding=True, return_attention_mask=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model(**bd)
            emb = torch.nn.functional.normalize(
                last_token_pool(out.last_hidden_state, bd["attention_mask"]), dim=1
            )
            emb.float().cpu()
    sync(device)
    return time.perf_counter() - start


def gemm_ceiling(cfg: dict, device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """(FLOP/s at the model's linear shapes, tokens/s ceiling)."""
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    kv = h // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    tokens = 8192 if device.type == "cuda" else 256
    flops_per_token = 2 * sum(a * b for a, b in shapes) * cfg["num_hidden_layers"]
    mats = [
        (torch.randn(tokens, a, device=device, dtype=dtype), torch.randn(a, b, device=device, dtype=dtype))
        for a, b in shapes
    ]
    for x, w in mats:
        x @ w
    sync(device)
    reps = 5
    start = time.perf_counter()
    for _ in range(reps):
        for x, w in mats:
            x @ w
    sync(device)
    seconds = (time.perf_counter() - start) / reps
    rate = 2 * tokens * sum(a * b for a, b in shapes) / seconds
    return rate, rate / flops_per_token


def timed(device: torch.device, fn):
    """(result, seconds) of ``fn()``, synchronised on the device."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def query_p50(enc, device: torch.device, calls: int = 50) -> float:
    """Median milliseconds of one short query, end to end (tokenize, forward, copy back)."""
    enc.encode_queries(["warm-up query"])
    latencies = []
    for i in range(calls):
        query = f"how much protein should a female eat {i}"
        _, secs = timed(device, lambda query=query: enc.encode_queries([query]))
        latencies.append(secs * 1000)
    return statistics.median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=sorted(ARCH), default="e5-mistral")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--parity-texts", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--variants",
        default="masked,compiled,graphs",
        help="levers to measure besides the default encoder (comma-separated; '' for none)",
    )
    args = parser.parse_args()
    variants = {v for v in args.variants.split(",") if v}
    unknown = variants - {"masked", "compiled", "graphs"}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; expected masked, compiled, graphs")

    from transformers import AutoModel, AutoTokenizer

    from e5_integrations import E5Encoder
    from e5_integrations._batching import plan_batches

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    texts = make_corpus(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(args.config, Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        n_tokens = sum(
            len(ids) + 1 for ids in tokenizer(texts, max_length=4095, truncation=True)["input_ids"]
        )
        results: dict = {
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "config": args.config,
            "texts": len(texts),
            "tokens": n_tokens,
            "torch": torch.__version__,
            "date": dt.date.today().isoformat(),
        }
        flops, ceiling = gemm_ceiling(ARCH[args.config], device, dtype)
        results.update(gemm_tflops=flops / 1e12, gemm_ceiling_tokens_per_s=ceiling)

        model = (
            AutoModel.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").to(device).eval()
        )
        secs = card_loop(model, tokenizer, texts, 16, device, sort=False)
        results["seed_reference_bf16"] = {"tokens_per_s": n_tokens / secs, "seconds": secs}
        secs = card_loop(model, tokenizer, texts, 32, device, sort=True)
        results["sorted_bs32"] = {"tokens_per_s": n_tokens / secs, "seconds": secs}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

        enc = E5Encoder(str(model_dir), device=str(device), dtype=dtype)
        start = time.perf_counter()
        ids = enc.tokenize(texts)
        results["tokenize_s"] = time.perf_counter() - start
        lengths = [len(row) for row in ids]
        plan = plan_batches(lengths, enc.batch_tokens)
        padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in plan)
        results["padding_fraction"] = 1 - sum(lengths) / padded
        enc.encode_documents(texts[:32])  # warm-up
        vectors, secs = timed(device, lambda: enc.encode_documents(texts))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        results["e5_integrations"] = {
            "tokens_per_s": n_tokens / secs,
            "seconds": secs,
            "peak_mem_gb": peak,
            "batches": len(plan),
            "batch_tokens": enc.batch_tokens,
        }
        results["query_p50_ms"] = query_p50(enc, device)

        graphs = compiled = None
        if "masked" in variants:
            for backend in enc._backends:
                backend.mask_free = False
            _, secs = timed(device, lambda: enc.encode_documents(texts))
            results["variant_masked"] = {"tokens_per_s": n_tokens / secs, "seconds": secs}
            for backend in enc._backends:
                backend.mask_free = True
        if "graphs" in variants and device.type == "cuda":
            graphs = E5Encoder(str(model_dir), device=str(device), dtype=dtype, cuda_graphs=True)
            graphs.encode_queries(["warm up the graph bucket"])
            runner = graphs._backends[0].graphs
            results["variant_graphs"] = {"query_p50_ms": query_p50(graphs, device), "enabled": runner.enabled}
        if "compiled" in variants:
            compiled = E5Encoder(str(model_dir), device=str(device), dtype=dtype, compile=True)
            _, warm = timed(device, lambda: compiled.encode_documents(texts))  # compiles, then runs
            _, secs = timed(device, lambda: compiled.encode_documents(texts))
            results["variant_compiled"] = {
                "tokens_per_s": n_tokens / secs,
                "seconds": secs,
                "first_run_with_compile_s": warm,
                "query_p50_ms": query_p50(compiled, device),
            }

        from tests.model_card_reference import model_card_embeddings

        # The reference in fp32, loaded once on the benchmark's device (a 7B model in fp32 on
        # the CPU would take many minutes); the card's loop in batches of 8.
        enc = graphs = compiled = None  # free the bf16 weights (they fit beside fp32 on 80 GB anyway)
        if device.type == "cuda":
            import gc

            gc.collect()
            torch.cuda.empty_cache()
        reference_model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
        subset = texts[: args.parity_texts]
        reference = np.concatenate(
            [
                model_card_embeddings(str(model_dir), subset[i : i + 8], model=reference_model).numpy()
                for i in range(0, len(subset), 8)
            ]
        )
        results["parity_min_cos"] = float((reference * vectors[: len(subset)]).sum(axis=1).min())
    results["e5_vs_ceiling"] = (
        results["e5_integrations"]["tokens_per_s"] / results["gemm_ceiling_tokens_per_s"]
    )
    results["e5_vs_sorted_bs32"] = (
        results["e5_integrations"]["tokens_per_s"] / results["sorted_bs32"]["tokens_per_s"]
    )
    if "variant_compiled" in results:
        results["compiled_vs_ceiling"] = (
            results["variant_compiled"]["tokens_per_s"] / results["gemm_ceiling_tokens_per_s"]
        )
    print(json.dumps(results, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    name = results["gpu"].replace(" ", "-").lower()
    path = args.out / f"{name}-{results['date']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
