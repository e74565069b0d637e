"""One training configuration timed in its own process: psycho_jax's train step or the PyTorch peer.

    python bench/train_step.py --framework=jax --task=sft --shape=small --model_dir=DIR
    python bench/train_step.py --framework=torch --task=dpo --shape=small --model_dir=DIR
    python bench/train_step.py --framework=jax --task=reward --shape=small --model_dir=DIR \
        --set=model.remat=dots --set=model.scan_layers=True

`bench/suite.py` runs this script once per (framework, task, shape, option), so each process's peak
resident memory is that configuration's alone, and writes `DIR` first (`prepare`: a random
psycho_jax Llama and reward model exported to Hugging Face directories with `save_llama`, plus the
logits/rewards psycho_jax computes on a fixed batch). Both frameworks load those directories, and
the PyTorch side checks its logits against psycho_jax's (atol 1e-4, float32) before it times anything.

Tasks: `sft`; `reward` (Bradley-Terry on chosen/rejected); `dpo` (sigmoid loss, live reference model);
`dpo_pre` (DPO with precomputed reference log-probs in the batch). Batches are random token ids,
every sequence full length, the first quarter a prompt (not a target): the same work in both
frameworks. With `--data=counsel` the sequences have CounselChat's lengths instead
(`counsel_examples`): psycho_jax packs them into its fixed [B,T] rows as the library does
(`data.packing`; pairs `data.pairs_per_row`), the PyTorch peer pads each batch of `batch` examples
to its longest sequence, as TRL's collators do, and tokens/s counts real tokens only.

psycho_jax: the library's own path: `train.build_model` from the HF directory, `step_lib.init_train_state`,
`step_lib.jit_train_step` (donated state, optax AdamW + clipping), the step dispatched before the
previous step's metrics are read, as `train_and_evaluate` does.
PyTorch peer: transformers' Llama (SDPA attention) with TRL 1.16's loss code (SFT: the model's
`labels` loss as `SFTTrainer`; reward: `-logsigmoid(chosen - rejected)` as `RewardTrainer`; DPO:
`trl.trainer.utils.selective_log_softmax` on one concatenated chosen+rejected forward and a
`torch.no_grad` reference forward, as `DPOTrainer`), gradient clipping and fused AdamW.
TRL (`--framework=trl`, a second peer): TRL 1.16's own SFTTrainer / RewardTrainer / DPOTrainer with
their defaults (`run_trl`).

Timing: `--warmup` steps (the first one compiles in JAX: `compile_s` is its time less a median step),
then `--windows` windows of `--steps` steps each, synchronised at each window's end; the step time is
the median window / steps. Prints one JSON line (and writes it to `--json`).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import ast  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from shapes import COUNSEL_LENGTHS, SHAPES, hf_config  # noqa: E402

TASKS = ("sft", "reward", "dpo", "dpo_pre")
PRECISIONS = ("float32", "bfloat16")  # compute dtype: bfloat16 = model.dtype / torch CPU autocast
DATA = ("fixed", "counsel")  # full-length random rows, or CounselChat's lengths (see --data)
PAIRS_PER_ROW = 4  # --data=counsel: packed pair slots per psycho_jax row
PARITY_ATOL = 1e-4
BETA = 0.1
LR = 1e-5


def make_batch(task: str, shape: str, seed: int) -> dict[str, np.ndarray]:
    """Random full-length sequences. SFT [B,T]; pairs [B,2,T] (+ `ref_logps` [B,2] for dpo_pre)."""
    s = SHAPES[shape]
    b, t, vocab = s["batch"], s["seq"], s["hf"]["vocab_size"]
    rng = np.random.default_rng(seed)
    lead = (b,) if task == "sft" else (b, 2)
    tokens = rng.integers(3, vocab, size=lead + (t,), dtype=np.int32)
    loss_mask = np.ones(lead + (t,), np.int32)
    loss_mask[..., : t // 4] = 0
    batch = {
        "tokens": tokens,
        "attention_mask": np.ones(lead + (t,), np.int32),
        "loss_mask": loss_mask,
    }
    if task == "dpo_pre":
        batch["ref_logps"] = rng.normal(-float(t), 1.0, size=(b, 2)).astype(np.float32)
    return batch


# ----------------------------------------------------------------------------- --data=counsel


def counsel_examples(task: str, shape: str, n: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """`n` random-token examples with CounselChat's lengths (`shapes.COUNSEL_LENGTHS`, scaled by
    seq / 512): (prompt, reply) for SFT, (prompt, chosen, rejected) for pairs. A sequence longer
    than `seq` keeps at most half of it for the prompt (its last tokens) and cuts the reply."""
    cl, t = COUNSEL_LENGTHS, SHAPES[shape]["seq"]
    vocab = SHAPES[shape]["hf"]["vocab_size"]
    scale = t / cl["reference_seq"]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q = rng.lognormal(cl["question_log_mean"], cl["question_log_sd"])
        p = max(int(round((q + cl["template_tokens"]) * scale)), 2)
        replies = rng.lognormal(
            cl["answer_log_mean"], cl["answer_log_sd"], 1 if task == "sft" else 2
        )
        r = [max(int(round(x * scale)), 1) for x in replies]
        if p + max(r) > t:
            p = min(p, t // 2)
            r = [min(x, t - p) for x in r]
        out.append(tuple(rng.integers(3, vocab, size=k, dtype=np.int32) for k in (p, *r)))
    return out


EPOCH_EXAMPLES = 2129  # --data=counsel: an epoch the size of CounselChat's 2,129 answers


def _examples_for(task: str, shape: str, rows: int) -> list[tuple[np.ndarray, ...]]:
    """An epoch of examples: CounselChat's size, or more if `rows` rows need more. Both sides
    draw their batches from the whole epoch, as a training run does: packing a few dozen examples
    would leave most rows open and under-filled, which no real epoch does."""
    return counsel_examples(task, shape, n=max(EPOCH_EXAMPLES, rows * 8))


def quantile_sample(fills: Sequence[float], k: int) -> list[int]:
    """Positions (in epoch order) of `k` units at evenly spaced quantiles (midpoints) of `fills`,
    their real-token fractions: a handful of timed steps then sees the epoch's mix of full and
    sparse rows or batches rather than whichever came first. Raises if there are fewer than k."""
    if len(fills) < k:
        raise ValueError(f"{len(fills)} rows or batches in the epoch, fewer than the {k} needed")
    order = np.argsort(np.asarray(fills), kind="stable")
    return sorted(int(order[int((j + 0.5) * len(order) / k)]) for j in range(k))


@functools.lru_cache(maxsize=4)  # the batches and the epoch fill of one worker share one packing
def _packed_epoch(task: str, shape: str, rows: int):
    """psycho_jax's epoch packed by the library: (items, rows, the real fraction of each row)."""
    from psycho_jax.data import batching
    from psycho_jax.data.templating import TokenizedConversation, TokenizedPair

    t = SHAPES[shape]["seq"]
    ex = _examples_for(task, shape, rows)
    if task == "sft":
        items = [
            TokenizedConversation(
                np.concatenate([p, r]),
                np.concatenate([np.zeros(len(p), bool), np.ones(len(r), bool)]),
                i,
            )
            for i, (p, r) in enumerate(ex)
        ]
        lengths = [len(c.tokens) for c in items]
        packed = batching.pack(lengths, t)
        fills = [sum(lengths[i] for i in row) / t for row in packed]
    else:
        items = [TokenizedPair(p, c, r, None, None, i) for i, (p, c, r) in enumerate(ex)]
        lengths = [batching.packed_pair_lengths(x) for x in items]
        packed = batching.pack(lengths, t, max_items=PAIRS_PER_ROW)
        fills = [sum(sum(lengths[i]) for i in row) / (2 * t) for row in packed]
    return items, packed, fills


def counsel_jax_batches(task: str, shape: str, n: int) -> list[dict[str, np.ndarray]]:
    """psycho_jax's `n` batches of `--data=counsel` examples, packed by the library: SFT rows of
    several conversations (`batching.collate_sft`), pair rows of up to `PAIRS_PER_ROW` pairs
    (`batching.collate_packed_pairs`); every batch `batch` rows of exactly `seq` tokens. The whole
    epoch is packed and the `n * batch` rows are its rows at evenly spaced quantiles of their fill
    (`quantile_sample`), so the timed rows fill as the epoch's do (`epoch_real_fraction`)."""
    from psycho_jax.data import batching

    b, t = SHAPES[shape]["batch"], SHAPES[shape]["seq"]
    items, packed, fills = _packed_epoch(task, shape, n * b)
    rows = [packed[i] for i in quantile_sample(fills, n * b)]
    groups = [[[items[i] for i in row] for row in rows[k * b : (k + 1) * b]] for k in range(n)]
    if task == "sft":
        batches = [batching.collate_sft(g, t, 0) for g in groups]
    else:
        batches = [batching.collate_packed_pairs(g, t, 0, False, PAIRS_PER_ROW) for g in groups]
    if task == "dpo_pre":
        rng = np.random.default_rng(1)
        for batch in batches:
            ref = rng.normal(-100.0, 1.0, size=batch["example_index"].shape + (2,))
            batch["ref_logps"] = ref.astype(np.float32)
    return batches


@functools.lru_cache(maxsize=4)
def _padded_epoch(task: str, shape: str, n: int):
    """The peer's epoch: consecutive groups of `batch` examples; each group's sequences, and its
    real tokens and token slots when padded to its longest (sequences x longest)."""
    b = SHAPES[shape]["batch"]
    ex = _examples_for(task, shape, n * b)
    groups, real, slots = [], [], []
    for k in range(len(ex) // b):
        group = ex[k * b : (k + 1) * b]
        seqs = [[np.concatenate([e[0], reply]) for reply in e[1:]] for e in group]
        groups.append((group, seqs))
        real.append(sum(len(x) for pair in seqs for x in pair))
        slots.append(sum(len(pair) for pair in seqs) * max(len(x) for p in seqs for x in p))
    return groups, np.asarray(real), np.asarray(slots)


def counsel_padded_batches(task: str, shape: str, n: int) -> list[dict[str, np.ndarray]]:
    """The PyTorch peer's `n` batches of the same examples, `batch` examples (SFT) or pairs each,
    right-padded to the batch's longest sequence (TRL's collators' default): [B,L] or [B,2,L].
    The epoch's consecutive groups of `batch` examples at evenly spaced quantiles of their fill
    (`quantile_sample`), as psycho_jax's rows are chosen."""
    b = SHAPES[shape]["batch"]
    groups, real, slots = _padded_epoch(task, shape, n)
    rng = np.random.default_rng(1)
    out = []
    for k in quantile_sample(real / slots, n):
        group, seqs = groups[k]
        longest = max(len(x) for pair in seqs for x in pair)
        lead = (b,) if task == "sft" else (b, 2)
        tokens = np.zeros(lead + (longest,), np.int32)
        attention = np.zeros(lead + (longest,), np.int32)
        loss_mask = np.zeros(lead + (longest,), np.int32)
        for i, (e, pair) in enumerate(zip(group, seqs, strict=True)):
            for j, x in enumerate(pair):
                at = (i,) if task == "sft" else (i, j)
                tokens[at][: len(x)] = x
                attention[at][: len(x)] = 1
                loss_mask[at][len(e[0]) : len(x)] = 1
        batch = {"tokens": tokens, "attention_mask": attention, "loss_mask": loss_mask}
        if task == "dpo_pre":
            batch["ref_logps"] = rng.normal(-100.0, 1.0, size=(b, 2)).astype(np.float32)
        out.append(batch)
    return out


def epoch_real_fraction(framework: str, task: str, shape: str, n: int) -> float:
    """Real tokens / token slots over the whole epoch the batches are drawn from: psycho_jax's
    packed rows, or the peer's padded batches (what the timed sample's `real_fraction` stands for)."""
    if framework == "jax":
        _, packed, fills = _packed_epoch(task, shape, n * SHAPES[shape]["batch"])
        return float(np.mean(fills))
    _, real, slots = _padded_epoch(task, shape, n)
    return float(real.sum() / slots.sum())


def real_tokens(batches: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Mean real (non-padding) tokens per batch, and their fraction of the batch's slots."""
    real = [int(np.sum(x["attention_mask"])) for x in batches]
    slots = [x["attention_mask"].size for x in batches]
    return statistics.mean(real), sum(real) / sum(slots)


def tokens_per_step(task: str, shape: str) -> int:
    s = SHAPES[shape]
    return s["batch"] * s["seq"] * (1 if task == "sft" else 2)


def _peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux: VmHWM, the peak of the current address space;
    ru_maxrss would carry over the parent's peak across fork + exec (a worker started by a large
    suite process would report the suite's memory)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


def _batches(args, counsel_fn) -> list[dict[str, np.ndarray]]:
    """The host batches a worker cycles through: 2 fixed random ones, or with `--data=counsel`
    `--steps` of them (each timed window runs every one once)."""
    if args.data == "counsel":
        return counsel_fn(args.task, args.shape, args.steps)
    return [make_batch(args.task, args.shape, seed=i) for i in range(2)]


def _token_counts(args, batches) -> dict[str, float]:
    """`--data=counsel`: the real tokens a step trains on (mean over the batches, padding not
    counted), their fraction of the batches' token slots, and that fraction over the whole epoch
    the batches are drawn from (how well the timed sample stands for it)."""
    if args.data != "counsel":
        return {}
    per_step, fill = real_tokens(batches)
    epoch = epoch_real_fraction(args.framework, args.task, args.shape, args.steps)
    return {"tokens_per_step": per_step, "real_fraction": fill, "epoch_real_fraction": epoch}


def _time_windows(run_window, warmup_fn, args) -> dict[str, float]:
    """Warm-up, then `args.windows` timed windows; seconds per step (median) and all windows."""
    t0 = time.perf_counter()
    warmup_fn()
    first = time.perf_counter() - t0
    windows = []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        run_window(args.steps)
        windows.append((time.perf_counter() - t0) / args.steps)
    return {"first_steps_s": first, "step_s": statistics.median(windows), "windows_s": windows}


# ----------------------------------------------------------------------------- psycho_jax


def prepare(model_dir: str, shape: str, seed: int = 0) -> None:
    """Random psycho_jax models of `shape` exported to `model_dir`/{causal,reward}, and psycho_jax's
    float32 logits and rewards on a fixed batch in `model_dir`/parity.npz."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from psycho_jax.core import hf
    from psycho_jax.core.model import Llama, RewardModel

    cfg = hf.config_from_hf(hf_config(shape).to_dict())
    out = pathlib.Path(model_dir)
    lm = Llama(cfg, rngs=nnx.Rngs(seed))
    rm = RewardModel(cfg, num_labels=1, rngs=nnx.Rngs(seed + 1))
    ids = {
        k: hf_config(shape).to_dict()[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id")
    }
    hf.save_llama(lm, out / "causal", **ids)
    hf.save_llama(rm, out / "reward", **ids)
    tokens = make_batch("sft", shape, seed=123)["tokens"][:2]
    logits = jax.jit(lambda m, x: m(x)[0])(lm, jnp.asarray(tokens))
    rewards = jax.jit(lambda m, x: m(x))(rm, jnp.asarray(tokens))
    np.savez(
        out / "parity.npz", tokens=tokens, logits=np.asarray(logits), rewards=np.asarray(rewards)
    )


def jax_config(task: str, shape: str, model_dir: str, overrides: list[str]):
    """The psycho_jax config of a benchmark run: base config, the shape, `--set` overrides."""
    from psycho_jax import config as config_lib

    c = config_lib.base_config()
    c.task = "dpo" if task == "dpo_pre" else task
    c.dpo.reference = "precomputed" if task == "dpo_pre" else "live"
    c.dpo.beta = BETA
    c.init_from = str(pathlib.Path(model_dir) / ("reward" if task == "reward" else "causal"))
    c.batch_size = SHAPES[shape]["batch"]
    c.data.max_len = SHAPES[shape]["seq"]
    c.optim.lr = LR
    c.optim.warmup_steps = 0
    c.optim.weight_decay = 0.0
    for item in overrides:
        key, _, value = item.partition("=")
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        old = node[leaf]
        if isinstance(old, str):
            node[leaf] = value
        else:  # numbers, booleans, tuples: Python literals
            node[leaf] = type(old)(ast.literal_eval(value))
    return c


def run_jax(args) -> dict:
    from psycho_jax import config as config_lib
    from psycho_jax.core import distributed

    overrides = (["model.dtype=bfloat16"] if args.precision == "bfloat16" else []) + args.set
    if args.data == "counsel":  # what the batches are (the step takes their shapes from them)
        overrides = [f"data.pairs_per_row={PAIRS_PER_ROW}", "data.packing=True"] + overrides
    c = jax_config(args.task, args.shape, args.model_dir, overrides)
    distributed.use_cpu_cores(c)  # as `python -m psycho_jax.main` does, before JAX starts
    c = config_lib.settings(c)  # the typed settings the library takes

    import jax
    from flax import nnx

    from psycho_jax.core import sharding
    from psycho_jax.core.model import trainable_filter
    from psycho_jax.train import loop as train
    from psycho_jax.train import step as step_lib
    from psycho_jax.train import tasks

    compiles: list[str] = []

    def on_event(name: str, _secs: float, **_kw) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    mesh = sharding.make_mesh(tuple(c.mesh))
    task = tasks.make_task(c)
    vocab = SHAPES[args.shape]["hf"]["vocab_size"]
    model = train.build_model(c, task, vocab, mesh, c.init_from)
    graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
    reference = None
    if task.needs_reference:  # a separate copy: the state's buffers are donated
        reference = nnx.split(train.build_model(c, task, vocab, mesh, c.init_from), nnx.Param, ...)[
            1
        ]
    tx, state = step_lib.init_train_state(c, params, rest, mesh)
    step_fn = step_lib.jit_train_step(c, graphdef, task, tx, state, reference)
    host = _batches(args, counsel_jax_batches)
    batches = [sharding.shard_batch(x, mesh) for x in host]
    jax.block_until_ready(batches)
    holder = {"state": state, "metrics": None, "i": 0}

    def run(n: int) -> None:
        for _ in range(n):
            batch = batches[holder["i"] % len(batches)]
            holder["state"], metrics = step_fn(holder["state"], batch, reference)
            if holder["metrics"] is not None:  # one step late, as the train loop reads them
                float(holder["metrics"]["loss"])
            holder["metrics"] = metrics
            holder["i"] += 1
        jax.block_until_ready(holder["state"])

    jax.monitoring.register_event_duration_secs_listener(on_event)
    with jax.set_mesh(mesh):
        timing = _time_windows(run, lambda: run(args.warmup), args)
    if args.profile:  # one more step under the profiler (TensorBoard / Perfetto trace)
        with jax.set_mesh(mesh), jax.profiler.trace(args.profile, create_perfetto_trace=True):
            run(1)
    loss = float(holder["metrics"]["loss"])
    return dict(
        timing,
        compiles=len(compiles),
        cache_size=step_fn._cache_size(),
        devices=jax.device_count(),
        mesh=dict(mesh.shape),
        loss=loss,
        params=model.config.num_params,
        **_token_counts(args, host),
    )


# ----------------------------------------------------------------------------- PyTorch peer


def run_torch(args) -> dict:
    import torch
    import transformers
    from trl.trainer.utils import selective_log_softmax

    torch.set_num_threads(args.torch_threads or os.cpu_count())
    torch.manual_seed(0)
    d = pathlib.Path(args.model_dir)
    kw = dict(dtype=torch.float32, attn_implementation="sdpa")
    parity = np.load(d / "parity.npz")
    if args.task == "reward":
        model = transformers.LlamaForSequenceClassification.from_pretrained(d / "reward", **kw)
        with torch.no_grad():
            got = model(torch.from_numpy(parity["tokens"]).long()).logits.numpy()
        want = parity["rewards"]
    else:
        model = transformers.LlamaForCausalLM.from_pretrained(d / "causal", **kw)
        with torch.no_grad():
            got = model(torch.from_numpy(parity["tokens"]).long()).logits.numpy()
        want = parity["logits"]
    err = float(np.max(np.abs(got - want)))
    if not err <= PARITY_ATOL:
        raise SystemExit(
            f"parity check failed: max |torch - psycho_jax| = {err:.3g} > {PARITY_ATOL}"
        )
    ref_model = None
    if args.task == "dpo":
        ref_model = transformers.LlamaForCausalLM.from_pretrained(d / "causal", **kw).eval()
        ref_model.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0, fused=True
    )

    def to_torch(batch):
        out = {k: torch.from_numpy(v) for k, v in batch.items()}
        for k in ("tokens", "attention_mask", "loss_mask"):
            out[k] = out[k].reshape(-1, out[k].shape[-1]).long()
        return out

    host = _batches(args, counsel_padded_batches)
    batches = [to_torch(x) for x in host]

    def seq_logps(m, b):
        logits = m(input_ids=b["tokens"], attention_mask=b["attention_mask"]).logits[:, :-1]
        per_token = selective_log_softmax(logits, b["tokens"][:, 1:])
        return (per_token * b["loss_mask"][:, 1:]).sum(-1).view(-1, 2)

    def loss_fn(b):
        if args.task == "sft":
            labels = b["tokens"].masked_fill(b["loss_mask"] == 0, -100)
            return model(
                input_ids=b["tokens"], attention_mask=b["attention_mask"], labels=labels
            ).loss
        if args.task == "reward":
            r = model(input_ids=b["tokens"], attention_mask=b["attention_mask"]).logits.view(-1, 2)
            return -torch.nn.functional.logsigmoid(r[:, 0] - r[:, 1]).mean()
        logps = seq_logps(model, b)
        if args.task == "dpo":
            with torch.no_grad():
                ref = seq_logps(ref_model, b)
        else:
            ref = b["ref_logps"]
        logits = BETA * ((logps[:, 0] - ref[:, 0]) - (logps[:, 1] - ref[:, 1]))
        return -torch.nn.functional.logsigmoid(logits).mean()

    state = {"i": 0, "loss": None}
    # bfloat16: mixed precision as a PyTorch user gets it (float32 weights and optimizer, matrix
    # products in bfloat16 under CPU autocast), the counterpart of psycho_jax's model.dtype=bfloat16.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bfloat16")

    def run(n: int) -> None:
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_fn(batches[state["i"] % len(batches)])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state["loss"] = loss.detach()
            state["i"] += 1

    timing = _time_windows(run, lambda: run(args.warmup), args)
    return dict(
        timing,
        loss=float(state["loss"]),
        parity_max_abs=err,
        params=sum(p.numel() for n, p in model.named_parameters()),
        torch_threads=torch.get_num_threads(),
        **_token_counts(args, host),
    )


# ----------------------------------------------------------------------------- TRL's trainers


def _word_tokenizer(vocab: int):
    """A tokenizer whose text is the ids themselves ("w5 w9 ..."), each word one token: TRL's
    DPOTrainer tokenizes text, and this makes its token ids exactly the benchmark batch's."""
    import tokenizers
    import transformers

    specials = {"<pad>": 0, "<s>": 1, "</s>": 2}  # make_batch draws ids from 3 up
    words = {**specials, **{f"w{i}": i for i in range(3, vocab)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="<pad>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def _trl_rows(task: str, shape: str, n: int) -> list[dict]:
    """`n` examples in the form each TRL trainer takes, from the benchmark's random batches: the
    same lengths (a quarter prompt) and targets as `make_batch`'s."""
    t, b = SHAPES[shape]["seq"], SHAPES[shape]["batch"]
    rows: list[dict] = []
    seed = 0
    while len(rows) < n:
        batch = make_batch("sft" if task == "sft" else "reward", shape, seed)
        seed += 1
        for i in range(b):
            if task == "sft":
                ids = batch["tokens"][i].tolist()
                rows.append(
                    {"input_ids": ids, "completion_mask": [0] * (t // 4) + [1] * (t - t // 4)}
                )
            elif task == "reward":
                rows.append(
                    {
                        "chosen_ids": batch["tokens"][i, 0].tolist(),
                        "rejected_ids": batch["tokens"][i, 1].tolist(),
                    }
                )
            else:  # text, re-tokenized by DPOTrainer into the same ids (one prompt per pair: the
                # chosen row's); it appends the EOS (id 2) itself
                words = [[f"w{x}" for x in batch["tokens"][i, k, : t - 1]] for k in range(2)]
                rows.append(
                    {
                        "prompt": " ".join(words[0][: t // 4]),
                        "chosen": " " + " ".join(words[0][t // 4 :]),
                        "rejected": " " + " ".join(words[1][t // 4 :]),
                    }
                )
    return rows[:n]


def run_trl(args) -> dict:
    """TRL 1.16's own `SFTTrainer`, `RewardTrainer` or `DPOTrainer` (live reference model, or
    `precompute_ref_log_probs=True` for dpo_pre) on the same model, shapes and token ids, with
    its defaults otherwise (as a researcher runs it, which in TRL 1.x includes gradient
    checkpointing: less memory, one more forward per step): AdamW (fused), clipping at 1.0,
    constant LR.
    A step's time is the interval between two `on_step_end` callbacks (data collation included);
    the first `--warmup` steps are left out and the rest grouped in `--windows` windows."""
    import tempfile

    import datasets
    import torch
    import transformers
    import trl

    torch.set_num_threads(args.torch_threads or os.cpu_count())
    d = pathlib.Path(args.model_dir)
    s = SHAPES[args.shape]
    n_steps = args.warmup + args.windows * args.steps
    kw = dict(dtype=torch.float32, attn_implementation="sdpa")
    out_dir = tempfile.TemporaryDirectory(prefix="trl_bench_")  # save_strategy="no": stays empty
    common = dict(
        output_dir=out_dir.name,
        per_device_train_batch_size=s["batch"],
        max_steps=n_steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        optim="adamw_torch_fused",
        max_grad_norm=1.0,
        bf16=args.precision == "bfloat16",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    rows = _trl_rows(args.task, args.shape, n_steps * s["batch"])
    data = datasets.Dataset.from_list(rows)
    tok = _word_tokenizer(s["hf"]["vocab_size"])
    if args.task == "sft":
        model = transformers.LlamaForCausalLM.from_pretrained(d / "causal", **kw)
        cfg = trl.SFTConfig(max_length=s["seq"], **common)
        trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
    elif args.task == "reward":
        model = transformers.LlamaForSequenceClassification.from_pretrained(d / "reward", **kw)
        cfg = trl.RewardConfig(max_length=s["seq"], **common)
        trainer = trl.RewardTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
    else:
        model = transformers.LlamaForCausalLM.from_pretrained(d / "causal", **kw)
        ref = None
        if args.task == "dpo":
            ref = transformers.LlamaForCausalLM.from_pretrained(d / "causal", **kw)
        cfg = trl.DPOConfig(
            beta=BETA,
            max_length=s["seq"],
            precompute_ref_log_probs=args.task == "dpo_pre",
            **common,
        )
        trainer = trl.DPOTrainer(
            model=model, ref_model=ref, args=cfg, train_dataset=data, processing_class=tok
        )
    ends: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, *_a, **_kw):
            ends.append(time.perf_counter())

    trainer.add_callback(Clock())
    t0 = time.perf_counter()
    with out_dir:
        out = trainer.train()
    steps = np.diff(np.asarray([t0] + ends))
    timed = steps[args.warmup :]
    windows = [float(np.mean(w)) for w in np.array_split(timed, args.windows)]
    return dict(
        first_steps_s=float(np.sum(steps[: args.warmup])),
        step_s=statistics.median(windows),
        windows_s=windows,
        loss=float(out.training_loss),
        params=sum(p.numel() for p in model.parameters()),
        torch_threads=torch.get_num_threads(),
        trl=trl.__version__,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("jax", "torch", "trl"), required=True)
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--shape", choices=tuple(SHAPES), required=True)
    parser.add_argument("--model_dir", required=True, help="written by `prepare` (bench/suite.py)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="compute dtype: bfloat16 = psycho_jax model.dtype=bfloat16 / torch CPU autocast",
    )
    parser.add_argument(
        "--data",
        choices=DATA,
        default="fixed",
        help="fixed: full-length random rows, the same work in both frameworks; counsel: "
        "CounselChat's lengths, psycho_jax packing its rows, the peer padding each batch to its "
        "longest (tokens/s counts real tokens)",
    )
    parser.add_argument("--set", action="append", default=[], help="psycho_jax config override k=v")
    parser.add_argument("--torch_threads", type=int, default=0, help="0: os.cpu_count()")
    parser.add_argument(
        "--profile", default="", help="jax: trace one extra step after timing into this directory"
    )
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.profile and args.framework != "jax":
        parser.error(f"--profile traces psycho_jax's step; --framework={args.framework}")
    run = {"jax": run_jax, "torch": run_torch, "trl": run_trl}[args.framework]
    result = run(args)
    tps = result.pop("tokens_per_step", None) or tokens_per_step(args.task, args.shape)
    result.update(
        data=args.data,
        framework=args.framework,
        task=args.task,
        shape=args.shape,
        options=args.set,
        precision=args.precision,
        tokens_per_step=tps,
        tokens_per_s=tps / result["step_s"],
        compile_s=max(result["first_steps_s"] - args.warmup * result["step_s"], 0.0),
        peak_rss_bytes=_peak_rss_bytes(),
    )
    line = json.dumps(result)
    print(line)
    if args.json:
        pathlib.Path(args.json).write_text(line + "\n")


if __name__ == "__main__":
    main()
