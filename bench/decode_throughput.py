"""Greedy decode throughput: `psycho_jax.core.decode.Sampler` against transformers' `generate`, same weights.

    python bench/decode_throughput.py                                # tiny and small, batch 1 and 16
    python bench/decode_throughput.py --sizes=tiny --max_new_tokens=64 --repeats=5
    python bench/decode_throughput.py --json=/tmp/decode.json
    python bench/decode_throughput.py --shapes=tiny,small,medium     # bench/shapes.py's (the suite's)

`--sizes` names this script's own SIZES; `--shapes` instead names the benchmark suite's shapes
(bench/shapes.py: their `hf` model dimensions; their training batch and length do not apply here).
For each size a random transformers `LlamaForCausalLM` (float32) is saved with `save_pretrained` and
loaded into JAX with `psycho_jax.core.hf.load_llama`, so both frameworks run identical weights. Prompts are
random ids of about `--prompt_len` tokens, left-padded to `--prompt_len` (batch > 1: lengths vary
between half and all of it). Both decode greedily with no stop token, so every row generates exactly
`--max_new_tokens` tokens: the sampler with `stop_ids=[]`, `generate` with `eos_token_id=None` and
`min_new_tokens=N`. Throughput is generated tokens (B * N) per second of the median of `--repeats`
timed calls, after a warm-up call each, JAX and torch calls interleaved (the machine is shared: the
1-minute load average is printed before and after; compare ratios, not absolute rates, across runs).
The sampler's first call compiles; "compile s" is that call's time minus the median. The whole call is timed on both sides (host arrays in, host arrays
out). "greedy match" compares the two outputs token for token: rows identical / B, and the share of
equal tokens (float32 near-ties can flip a greedy choice and the continuation after it).

Torch runs with `torch.set_num_threads(os.cpu_count())` (`--torch_threads`); XLA uses its default CPU thread pool (one
thread per core). Target (the decode issue): JAX/torch > 1 at both batch sizes, on tiny and small.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import SHAPES  # noqa: E402

PAD = 0

# Sizes as transformers LlamaConfig fields. tiny: the suite's tiny shape (`use_tiny_model` with the
# sample tokenizer's 2,048 ids); small: ~57M parameters, a 32k vocabulary.
SIZES = {
    "tiny": dict(SHAPES["tiny"]["hf"]),
    "small": dict(
        vocab_size=32000,
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1536,
    ),
}


@dataclasses.dataclass
class Result:
    size: str
    batch: int
    params: int
    prompt_len: int
    new_tokens: int
    jax_tok_s: float
    torch_tok_s: float
    ratio: float
    compile_s: float
    jax_times: list[float]
    torch_times: list[float]
    rows_equal: int
    token_match: float


def _hf_model(dims: dict, seed: int):
    """A random float32 `LlamaForCausalLM`: weights ~ N(0, 1/fan_in), norms ~ 1 + N(0, 0.1²), so that
    greedy continuations vary (HF's 0.02 init gives near-uniform logits and many near-ties)."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        **dims,
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        pad_token_id=PAD,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(torch.randn_like(p))
            else:  # nn.Linear weight [out, in]
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
    return model


def _prompts(batch: int, length: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded random prompts [B,T] and mask; row 0 is full length, the others vary."""
    rng = np.random.default_rng(seed)
    lengths = [length] + list(rng.integers(length // 2, length + 1, batch - 1))
    tokens = np.full((batch, length), PAD, np.int64)
    mask = np.zeros((batch, length), np.int64)
    for i, n in enumerate(lengths):
        tokens[i, length - n :] = rng.integers(1, vocab, n)
        mask[i, length - n :] = 1
    return tokens, mask


def _seconds(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _jax_generate(sampler, tokens: np.ndarray, mask: np.ndarray, sampling) -> np.ndarray:
    return sampler.generate(tokens, mask, sampling).tokens


def _torch_generate(model, tokens: np.ndarray, mask: np.ndarray, n: int):
    """A function running `generate` greedily for exactly n new tokens -> [B,n] numpy."""
    import torch

    ids, attention = torch.from_numpy(tokens), torch.from_numpy(mask)

    def run() -> np.ndarray:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=attention,
                do_sample=False,
                max_new_tokens=n,
                min_new_tokens=n,
                eos_token_id=None,
                pad_token_id=PAD,
            )
        return out[:, tokens.shape[1] :].numpy()

    return run


def run_size(size: str, args, workdir: str) -> list[Result]:
    from psycho_jax.core import decode, hf

    dims = args.dims[size]
    model_pt = _hf_model(dims, args.seed)
    path = os.path.join(workdir, size)
    model_pt.save_pretrained(path)
    params = sum(p.numel() for p in model_pt.parameters())
    model_jx = hf.load_llama(path, dtype="float32", param_dtype="float32")
    sampler = decode.Sampler(model_jx, stop_ids=[], bucket=args.bucket)
    sampler.pad_id = PAD
    n = args.max_new_tokens
    sampling = decode.Sampling(temperature=0.0, max_new_tokens=n)

    results = []
    for batch in args.batch_sizes:
        tokens, mask = _prompts(batch, args.prompt_len, dims["vocab_size"], args.seed + batch)
        run_jax = functools.partial(_jax_generate, sampler, tokens, mask, sampling)
        run_torch = _torch_generate(model_pt, tokens, mask, n)

        first, out_jax = _seconds(run_jax)  # compiles
        _, out_pt = _seconds(run_torch)  # warm-up
        # Interleaved, so that a change in the shared machine's load hits both frameworks alike.
        jax_times, torch_times = [], []
        for _ in range(args.repeats):
            jax_times.append(_seconds(run_jax)[0])
            torch_times.append(_seconds(run_torch)[0])

        assert out_jax.shape == out_pt.shape == (batch, n), (out_jax.shape, out_pt.shape)
        jax_s, torch_s = statistics.median(jax_times), statistics.median(torch_times)
        r = Result(
            size=size,
            batch=batch,
            params=params,
            prompt_len=args.prompt_len,
            new_tokens=n,
            jax_tok_s=batch * n / jax_s,
            torch_tok_s=batch * n / torch_s,
            ratio=torch_s / jax_s,
            compile_s=first - jax_s,
            jax_times=jax_times,
            torch_times=torch_times,
            rows_equal=int((out_jax == out_pt).all(axis=1).sum()),
            token_match=float((out_jax == out_pt).mean()),
        )
        print(
            f"  {size} B={batch}: JAX {r.jax_tok_s:,.0f} tok/s, torch {r.torch_tok_s:,.0f} tok/s, "
            f"x{r.ratio:.2f}, compile {r.compile_s:.1f} s, match {r.rows_equal}/{batch}",
            flush=True,
        )
        results.append(r)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="tiny,small", help=f"comma list of {', '.join(SIZES)}")
    parser.add_argument(
        "--shapes",
        default="",
        help=f"comma list of bench/shapes.py shapes ({', '.join(SHAPES)}); replaces --sizes",
    )
    parser.add_argument("--batch_sizes", default="1,16", help="comma list")
    parser.add_argument("--prompt_len", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per framework (median)")
    parser.add_argument("--bucket", type=int, default=32, help="Sampler prompt bucket")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_threads", type=int, default=0, help="0: os.cpu_count()")
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args()
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    flag, table = (
        ("--shapes", {k: v["hf"] for k, v in SHAPES.items()}) if args.shapes else ("--sizes", SIZES)
    )
    sizes = (args.shapes or args.sizes).split(",")
    for s in sizes:
        if s not in table:
            parser.error(f"{flag}: unknown {s!r}; valid: {', '.join(table)}")
    args.dims = {s: table[s] for s in sizes}

    import jax
    import torch
    import transformers

    torch.set_num_threads(args.torch_threads or os.cpu_count())
    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; "
        f"{os.cpu_count()} CPUs; float32, greedy, prompt {args.prompt_len}, "
        f"{args.max_new_tokens} new tokens, median of {args.repeats}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            results += run_size(size, args, workdir)

    load_after = os.getloadavg()[0]
    print(f"1-minute load average: {load_before:.1f} before, {load_after:.1f} after")
    if load_before > 0.5 * os.cpu_count():  # after: includes this run itself
        print(
            "warning: the machine was busy; torch's OpenMP threads slow down far more than XLA's "
            "when a core is taken, so the ratios flatter JAX. Rerun on an idle machine."
        )
    print()
    print(
        "| size | batch | params | JAX tok/s | torch tok/s | JAX/torch | compile s | greedy match |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.size} | {r.batch} | {r.params / 1e6:.1f}M | {r.jax_tok_s:,.0f} | "
            f"{r.torch_tok_s:,.0f} | {r.ratio:.2f} | {r.compile_s:.1f} | "
            f"{r.rows_equal}/{r.batch} rows, {r.token_match:.1%} tokens |"
        )
    if args.json:
        meta = dict(
            jax=jax.__version__,
            torch=torch.__version__,
            transformers=transformers.__version__,
            cpus=os.cpu_count(),
            load_before=load_before,
            load_after=load_after,
            machine=platform.machine(),
            args={k: v for k, v in vars(args).items() if k not in ("json", "dims")},
            dims=args.dims,
        )
        with open(args.json, "w") as f:
            json.dump(
                dict(meta=meta, results=[dataclasses.asdict(r) for r in results]), f, indent=1
            )
        print(f"wrote {args.json}")
    slow = [f"{r.size} B={r.batch}" for r in results if r.ratio <= 1]
    if slow:
        print(f"JAX not faster than torch at: {', '.join(slow)}")


if __name__ == "__main__":
    main()
