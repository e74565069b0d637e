"""`train_and_evaluate(settings, workdir)` for every task, in three stages read top to bottom:

    start   tokenizer -> data -> model (resumed, random, a previous stage or Hugging Face) ->
            optimizer and sharded train state -> DPO's reference
    fit     the steps (`psycho_jax.train.step`): train, log, evaluate, checkpoint, stop on a signal
    finish  reward statistics, the final checkpoint, tokenizer, adapters, final metrics

The tasks (`psycho_jax.train.tasks`) differ only in how a batch becomes a loss.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from psycho_jax.core import lora as lora_lib
from psycho_jax.core import sharding
from psycho_jax.core.metrics_writer import MetricsWriter
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel, trainable_filter
from psycho_jax.data import tokenizer as tokenizer_lib
from psycho_jax.data import training as data_lib
from psycho_jax.train import checkpoint as ckpt_lib
from psycho_jax.train import reference as reference_lib
from psycho_jax.train import tasks
from psycho_jax.train.settings import TrainSettings
from psycho_jax.train.step import (
    TrainState,
    _on_mesh,
    eval_step,
    init_train_state,
    jit_train_step,
    make_schedule,
)

Batch = dict[str, Any]

# ----------------------------------------------------------------------------- models


def build_model(
    c: TrainSettings, task: tasks.Task, vocab_size: int, mesh, init_from: str
) -> nnx.Module:
    """The model for `task`: random, or initialised from a stage checkpoint or a HF directory.

    A reward model initialised from a causal LM takes its backbone and a fresh `score` head. With
    `lora.rank > 0` the model gets fresh adapters on top; a checkpoint that has adapters of its own
    (a LoRA stage) is merged into its base first.
    """
    rules = c.sharding_rules
    if init_from:
        source = lora_lib.merge(
            ckpt_lib.load_model(init_from, mesh=mesh, rules=rules, **c.model.numerics)
        )
        cfg = source.config.replace(**c.lora.fields)
    else:
        source = None
        cfg = c.llama_config(vocab_size)
    if source is not None and (task.name != "reward" or isinstance(source, RewardModel)):
        if isinstance(source, RewardModel) != (task.name == "reward"):
            raise ValueError(
                f"init_from={init_from!r} holds a reward model; task {task.name} needs an LM"
            )
        if task.name == "reward" and source.num_labels != task.num_labels:
            raise ValueError(
                f"init_from={init_from!r} has {source.num_labels} reward outputs; the config asks "
                f"for {task.num_labels} (reward.principle_head={c.reward.principle_head})"
            )
        if c.lora.rank:
            lora_lib.add_adapters(
                source, c.lora.rank, c.lora.alpha, c.lora.targets, seed=c.seed, rules=rules
            )
        return source
    seed = c.seed
    if task.name == "reward":
        make = lambda: RewardModel(cfg, num_labels=task.num_labels, rngs=nnx.Rngs(seed))
    else:
        make = lambda: Llama(cfg, rngs=nnx.Rngs(seed))
    model = sharding.init_sharded(make, mesh, rules)
    if source is not None:  # reward model from a causal LM: copy the backbone (not the adapters)
        nnx.update(model.model, nnx.state(source.model))
    return model


def model_flops_per_token(cfg: LlamaConfig, seq_len: int, task: tasks.Task) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 6 x L x T x (N x H) for causal attention
    (half of the 12 L T N H of full attention); a live DPO reference adds its forward pass (1/3).
    With LoRA the frozen base needs no weight gradients (4 x its parameters) and the adapters cost
    6 x theirs."""
    embed = cfg.vocab_size * cfg.dim
    matmul = cfg.num_params - embed - cfg.n_layers * 2 * cfg.dim - cfg.dim
    if cfg.tie_embeddings:
        matmul += embed
    attn = cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim
    if cfg.lora_rank:
        flops = 4.0 * matmul + 6.0 * cfg.num_lora_params + 6.0 * attn
    else:
        flops = 6.0 * matmul + 6.0 * attn
    if task.needs_reference:
        flops += 2.0 * matmul + 2.0 * attn
    return flops


_PEAK_FLOPS = {  # dense bf16 per device
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v5p": 459e12,
    "TPU v5 lite": 197e12,
    "TPU v4": 275e12,
    "TPU v6": 918e12,
}


def peak_flops(c: TrainSettings) -> float:
    if c.peak_flops_per_device:
        return c.peak_flops_per_device
    kind = jax.devices()[0].device_kind
    return next((v for k, v in _PEAK_FLOPS.items() if k in kind), 0.0)


# ----------------------------------------------------------------------------- the loop


def _to_host(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def evaluate(
    eval_fn, state: TrainState, reference, batches: Iterator[Batch], mesh
) -> dict[str, float]:
    """Metrics over the eval batches, each batch's means weighted by its denominator (target
    tokens, real pairs), so a padded last batch counts for what it holds; ratio metrics pooled.
    `eval/examples` is how many sequences or pairs were evaluated."""
    totals: dict[str, float] = {}
    weight = examples = 0.0
    for batch in batches:
        metrics = _to_host(
            eval_fn(state.params, state.rest, sharding.shard_batch(batch, mesh), reference)
        )
        w = metrics.pop("_weight")
        for k, v in metrics.items():
            plain = k.startswith((tasks.RATIO_NUM, tasks.RATIO_DEN)) or k == "num_tokens"
            totals[k] = totals.get(k, 0.0) + (v if plain else v * w)
        weight += w
        examples += _real_examples(batch)
    means = {  # num_tokens: the total over the split
        k: v
        if k.startswith((tasks.RATIO_NUM, tasks.RATIO_DEN)) or k == "num_tokens"
        else v / max(weight, 1e-9)
        for k, v in totals.items()
    }
    out = {f"eval/{k}": float(v) for k, v in tasks.finalize(means).items()}
    if jax.process_count() > 1:  # each host counted its own rows
        examples = float(np.sum(multihost_utils.process_allgather(np.float64(examples))))
    out["eval/examples"] = examples
    return out


def _real_examples(batch: Batch) -> float:
    """Sequences (SFT: segments) or pairs of this host's part of a batch (empty rows excluded)."""
    if "example_index" in batch:
        return float(np.sum(np.asarray(batch["example_index"]) >= 0))
    seg = np.asarray(batch["segment_ids"])
    return float(sum(len(np.unique(row[row > 0])) for row in seg))


def reward_statistics(state: TrainState, graphdef, batches: Iterator[Batch], mesh) -> TrainState:
    """Sets the reward model's `reward_mean` / `reward_std` to the mean and standard deviation of its
    rewards over every reply of the training set (OpenRLHF's normalisation statistics)."""

    @jax.jit
    def scores(params, rest, batch):
        r = tasks.Reward.forward(nnx.merge(graphdef, params, rest), batch)[..., 0]  # [P,2]
        # real pair slots only (empty rows pad a last batch, empty slots a packed unit)
        return r, jnp.broadcast_to((batch["example_index"] >= 0).reshape(-1, 1), r.shape)

    total = total_sq = count = 0.0
    with jax.set_mesh(mesh):
        for batch in batches:
            r, real = scores(state.params, state.rest, sharding.shard_batch(batch, mesh))
            if jax.process_count() > 1:  # rows live on other hosts' devices too
                r = multihost_utils.process_allgather(r, tiled=True)
                real = multihost_utils.process_allgather(real, tiled=True)
            r = np.asarray(r, np.float64)[np.asarray(real)]
            total, total_sq, count = total + r.sum(), total_sq + np.square(r).sum(), count + r.size
    mean = total / max(count, 1)
    std = float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 1e-12)))
    rest = jax.tree.map(lambda x: x, state.rest)
    rest["reward_mean"][...] = jnp.asarray(mean, jnp.float32)
    rest["reward_std"][...] = jnp.asarray(std, jnp.float32)
    logging.info("reward statistics over %d replies: mean %.4f, std %.4f", int(count), mean, std)
    return state.replace(rest=_on_mesh(rest, mesh))


def principle_head_if_rated(run: TrainSettings, tokenizer) -> TrainSettings:
    """The settings, with `reward.principle_head` off (and said once) when the training pairs carry
    no per-principle ratings: such a head would never train, and its scores would mean nothing."""
    if run.task != "reward" or not run.reward.principle_head:
        return run
    if data_lib.make_loader(run, tokenizer, "train", "reward").with_ratings:
        return run
    logging.warning(
        "reward.principle_head: the training pairs (%s) carry no per-principle ratings, so the "
        "principle head is off (it would never train)",
        run.data.train,
    )
    return run.replace(reward=dataclasses.replace(run.reward, principle_head=False))


def stop_after_bad_steps(
    ckpt: ckpt_lib.Checkpointer,
    save,
    step: int,
    bad: int,
    last_good: int,
    saved_step: int | None,
    metrics: dict[str, jax.Array],
) -> None:
    """Stops a run after `bad` consecutive non-finite steps (each left the state unchanged).

    The state is saved only when a finite step updated it after the newest checkpoint (`saved_step`;
    `step` itself counts when finite): otherwise the newest checkpoint already holds it, and a save
    would only push an older checkpoint out under `keep_checkpoints` (a resumed checkpoint whose
    every step is non-finite may itself be damaged)."""
    if float(metrics["skipped"]) == 0.0:
        last_good = step
    newest = "none" if saved_step is None else str(ckpt.path(saved_step))
    if saved_step is None or last_good > saved_step:
        save(step)
        where = f"the last good state is saved in {ckpt.path(step)} (as after step {last_good})"
    else:
        where = (
            f"no step since the newest checkpoint ({newest}) was finite, so nothing was saved: "
            "that checkpoint holds the state they started from"
        )
    ckpt.close()
    raise FloatingPointError(
        f"{bad} consecutive steps had a non-finite loss or gradient (up to step {step - 1}); "
        f"stopped; {where}. Lower the learning rate or check the data"
    )


def configured_architecture(run: TrainSettings, vocab_size: int, saved: LlamaConfig) -> LlamaConfig:
    """The architecture the settings build: the preset and sizes, or `init_from`'s model with the
    run's LoRA layout. When `init_from` can no longer be read, the checkpoint's (`saved`) with
    the run's LoRA layout, said in the log."""
    if not run.init_from:
        return run.llama_config(vocab_size)
    try:
        source = ckpt_lib.read_architecture(run.init_from)
    except (OSError, ValueError, ckpt_lib.CheckpointDamaged) as e:
        logging.warning(
            "init_from=%s cannot be read (%s); the resumed model is the checkpoint's",
            run.init_from,
            e,
        )
        source = saved
    return source.replace(**run.lora.fields)


def resume(
    run: TrainSettings,
    task: tasks.Task,
    ckpt: ckpt_lib.Checkpointer,
    vocab_size: int,
    mesh,
    loader,
) -> tuple[nnx.Module, nnx.GraphDef, optax.GradientTransformation, TrainState] | None:
    """The stopped run from its newest intact checkpoint, or None when there is none.

    The model is built as the checkpoint records it (never from the preset: a run from `init_from`
    resumes the model it trained), with the run's numerics; settings that build another
    architecture, head or task are an error naming both values. Parameters, optimizer, step and the
    loader's position are restored and checked against their checksums; a damaged checkpoint is
    named, moved to `damaged_checkpoints/`, and the previous one is tried.
    """
    numerics = run.model.numerics
    labels = task.num_labels if task.name == "reward" else None
    damaged = []
    for step in ckpt.steps():
        where = ckpt.path(step)
        try:
            if not ckpt.has_train_state(step):
                raise ckpt_lib.CheckpointDamaged(where, "no optimizer state ('opt')")
            meta = ckpt.meta(step)
            cfg, saved_labels = ckpt_lib.architecture_of(meta, **numerics)
            expected = configured_architecture(run, vocab_size, cfg)
            ckpt_lib.check_compatible(meta, expected, labels, task.name, numerics, where)
            model = sharding.init_sharded(
                ckpt_lib.make_model(cfg, saved_labels, run.seed), mesh, run.sharding_rules
            )
            graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
            tx, state = init_train_state(run, params, rest, mesh)
            state, loader_state = ckpt.restore(step, state, graphdef, meta)
        except ckpt_lib.CheckpointDamaged as e:
            dest = ckpt.set_aside(step)
            damaged.append(str(where))
            logging.error(
                "%s; moved to %s (delete it when no longer needed); trying the previous checkpoint",
                e,
                dest,
            )
            continue
        loader.set_state(loader_state)
        logging.info("resumed from %s", where)
        return model, graphdef, tx, state
    if damaged:
        logging.error("no intact checkpoint left (%s damaged): starting afresh", ", ".join(damaged))
    return None


def dpo_reference(
    run: TrainSettings, task, model, graphdef, state: TrainState, tokenizer, mesh
) -> tuple[nnx.State | None, dict[str, dict]]:
    """DPO's reference: `(live reference parameters, None)` for a live reference, or `(None,
    {split: log-prob table})` precomputed once per (data, tokenizer, reference weights) and cached on
    disk; `(None, {})` when the loss needs none. Built after a resume's restore (a LoRA model's base
    is then in `state.rest`)."""
    if task.name != "dpo" or not run.dpo.needs_reference:
        return None, {}
    if model.config.lora_rank and run.dpo.reference_from in ("", run.init_from):
        # The frozen base: the policy's own graph and base weights with zero adapters, exactly the
        # base's numbers and no second copy of the weights.
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype, device=x.sharding), state.params)
        ref_model, ref_state = nnx.merge(graphdef, zeros, state.rest), zeros
    else:  # another model (with LoRA only precomputed: settings check), without adapters
        plain = run.replace(lora=dataclasses.replace(run.lora, rank=0))
        ref_from = run.dpo.reference_from or run.init_from
        ref_model = build_model(plain, task, len(tokenizer), mesh, ref_from)
        ref_state = nnx.split(ref_model, nnx.Param, ...)[1]
    if run.dpo.reference == "live":
        return ref_state, {}
    tables = {}
    for split in ("train", "eval") if run.data.held_out else ("train",):
        pairs = data_lib.make_loader(run, tokenizer, split, task.name, epochs=1).examples
        table = reference_lib.reference_table(
            ref_model, pairs, tokenizer, run.batch_size, mesh, run.dpo.reference_cache
        )
        tables[split] = reference_lib.by_example_index(pairs, table)
    return None, tables


@dataclasses.dataclass
class Session:
    """What a training run sets up once (`start`) and its stages read: the loop (`fit`) and the
    end (`finish`). The train state itself is passed from stage to stage, never kept here."""

    run: TrainSettings
    workdir: pathlib.Path
    mesh: jax.sharding.Mesh
    tokenizer: Any
    task: tasks.Task
    ckpt: ckpt_lib.Checkpointer
    train_loader: Any
    model: nnx.Module
    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    first_step: int  # the step the state is at when the run (re)starts
    resumed: bool
    reference: nnx.State | None  # a live DPO reference's parameters
    ref_tables: dict[str, dict]  # precomputed reference log-probs per split
    writer: MetricsWriter
    eval_fn: Any  # the jitted `eval_step`

    def batches(self, split: str, epochs: int | None, loader=None) -> Iterator[Batch]:
        loader = loader or data_lib.make_loader(
            self.run, self.tokenizer, split, self.task.name, epochs=epochs
        )
        return (
            reference_lib.attach(loader, self.ref_tables[split])
            if self.ref_tables
            else iter(loader)
        )

    def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
        """Eval metrics at `step` (written), or {} without a held-out split."""
        if not self.run.data.held_out:
            return {}
        batches = itertools.islice(self.batches("eval", 1), self.run.eval_batches or None)
        with jax.set_mesh(self.mesh):
            metrics = evaluate(self.eval_fn, state, self.reference, batches, self.mesh)
        self.writer.write(step, metrics)
        return metrics

    def save(self, state: TrainState, step: int, metrics: dict[str, float] | None = None) -> None:
        self.ckpt.save(
            step, state, self.graphdef, self.model, self.run, self.train_loader.get_state(), metrics
        )


def start(run: TrainSettings, workdir: pathlib.Path) -> tuple[Session, TrainState]:
    """Stage 1: tokenizer, task, data, the model and train state (resumed, or fresh from the preset,
    a previous stage or a Hugging Face directory), DPO's reference, metrics."""
    mesh = sharding.make_mesh(run.mesh)
    tokenizer = tokenizer_lib.load_tokenizer(run.tokenizer)
    run = principle_head_if_rated(run, tokenizer)
    task = tasks.make_task(run)
    ckpt = ckpt_lib.Checkpointer(workdir, run)
    train_loader = data_lib.make_loader(run, tokenizer, "train", task.name)
    resumed = resume(run, task, ckpt, len(tokenizer), mesh, train_loader)
    if resumed is None:
        model = build_model(run, task, len(tokenizer), mesh, run.init_from)
        graphdef, params, rest = nnx.split(model, trainable_filter(model), ...)
        tx, state = init_train_state(run, params, rest, mesh)
    else:
        model, graphdef, tx, state = resumed
    reference, ref_tables = dpo_reference(run, task, model, graphdef, state, tokenizer, mesh)
    if run.eval_every and not run.data.held_out:
        logging.warning(
            "no evaluation: %s",
            "data.eval is empty"
            if not run.data.eval
            else f"data.eval={run.data.eval!r} is the embedded sample while data.train is your "
            "data; set data.eval to a held-out split of it",
        )
    writer = MetricsWriter(
        workdir,
        run.num_steps,
        name=task.name,
        wandb_project=run.wandb_project,
        run_config=run.as_dict(),
    )
    session = Session(
        run=run,
        workdir=workdir,
        mesh=mesh,
        tokenizer=tokenizer,
        task=task,
        ckpt=ckpt,
        train_loader=train_loader,
        model=model,
        graphdef=graphdef,
        tx=tx,
        first_step=int(state.step),
        resumed=resumed is not None,
        reference=reference,
        ref_tables=ref_tables,
        writer=writer,
        eval_fn=jax.jit(functools.partial(eval_step, graphdef=graphdef, task=task)),
    )
    logging.info(
        "training %s: %s parameters (%s trained) on mesh %s, steps %d..%d",
        task.name,
        f"{model.config.num_params + model.config.num_lora_params:,}",
        f"{sum(x.size for x in jax.tree.leaves(state.params)):,}",
        dict(mesh.shape),
        int(state.step) + 1,
        run.num_steps,
    )
    return session, state


class BadSteps:
    """Counts consecutive non-finite steps. A step's metrics are read one step late (`seen`), so the
    host never waits for the device; each skipped update is logged with its examples."""

    def __init__(self):
        self.in_a_row = 0
        self.pending = None

    def seen(self, step: int, metrics: dict[str, jax.Array], ids, writer: MetricsWriter) -> int:
        if self.pending:
            p_step, p_metrics, p_ids = self.pending
            writer.progress(p_step, p_metrics)
            if float(p_metrics["skipped"]):
                self.in_a_row += 1
                logging.warning(
                    "step %d: non-finite loss or gradient, update skipped (example_index %s)",
                    p_step,
                    None if p_ids is None else p_ids.tolist(),
                )
            else:
                self.in_a_row = 0
        self.pending = (step, metrics, ids)
        return self.in_a_row


class Throughput:
    """Tokens per second (and MFU, with a known peak) between two logged steps."""

    def __init__(self, run: TrainSettings, model_config: LlamaConfig, task):
        self.flops_per_token = model_flops_per_token(model_config, run.data.max_len, task)
        self.peak = peak_flops(run)
        self.tokens, self.since = 0, time.perf_counter()

    def add(self, batch: Batch) -> None:
        mask = batch["attention_mask"] if "attention_mask" in batch else batch["segment_ids"] > 0
        self.tokens += int(np.sum(mask))

    def read(self) -> dict[str, float]:
        if jax.process_count() > 1:  # each host counted only its own rows
            self.tokens = int(np.sum(multihost_utils.process_allgather(np.int64(self.tokens))))
        dt = time.perf_counter() - self.since
        out = {"tokens_per_second": self.tokens / dt}
        if self.peak:
            out["mfu"] = self.tokens * self.flops_per_token / dt / (self.peak * jax.device_count())
        self.tokens, self.since = 0, time.perf_counter()
        return out


def fit(s: Session, state: TrainState) -> tuple[TrainState, dict[str, float], bool]:
    """Stage 2: the steps from the (resumed) state to `num_steps`: train, log, evaluate, checkpoint;
    stops with a checkpoint on SIGTERM/SIGINT. Returns (state, final metrics, preempted)."""
    run, first = s.run, s.first_step
    step_fn = jit_train_step(run, s.graphdef, s.task, s.tx, state, s.reference)
    train_data = s.batches("train", None, s.train_loader)
    saved_step = first if s.resumed else None
    bad, speed, schedule = BadSteps(), Throughput(run, s.model.config, s.task), make_schedule(run)
    final = s.evaluate(state, 0) if run.eval_every and first == 0 else {}
    with jax.set_mesh(s.mesh), ckpt_lib.StopRequest() as stop:
        for step in range(first + 1, run.num_steps + 1):
            batch = next(train_data)
            speed.add(batch)
            state, metrics = step_fn(state, sharding.shard_batch(batch, s.mesh), s.reference)
            in_a_row = bad.seen(step, metrics, batch.get("example_index"), s.writer)
            if in_a_row >= run.max_bad_steps:
                stop_after_bad_steps(
                    s.ckpt,
                    functools.partial(s.save, state),
                    step,
                    in_a_row,
                    step - in_a_row - 1,
                    saved_step,
                    metrics,
                )
            if run.at(run.log_every, step):
                logged = {**_to_host(metrics), **speed.read(), "lr": float(schedule(step - 1))}
                s.writer.write(step, logged)
                final.update(logged)
            evaluated = {}
            if run.at(run.eval_every, step):
                evaluated = s.evaluate(state, step)
                final.update(evaluated)
            if stop.requested(every=run.log_every, step=step):
                preempt(s, state, step, evaluated, stop.signal)
                return state, {**final, "preempted": 1.0}, True
            if run.at(run.checkpoint_every, step) and step < run.num_steps:
                s.save(state, step, evaluated or None)
                saved_step = step
    return state, final, False


def preempt(s: Session, state: TrainState, step: int, evaluated: dict, signal) -> None:
    """Saves the state after `step` (waiting for the write) when a stop signal came."""
    s.save(state, step, evaluated or None)
    s.ckpt.wait()
    logging.warning(
        "signal %s: stopped after step %d, saved %s/checkpoints/%d; run the same command to resume",
        signal,
        step,
        s.workdir,
        step,
    )


def finish(s: Session, state: TrainState, final: dict[str, float], preempted: bool) -> dict:
    """Stage 3: a reward model's normalisation statistics, the final checkpoint (what the next
    stage's `init_from` loads), the tokenizer, LoRA adapters in PEFT's layout, final_metrics.json."""
    run = s.run
    if not preempted:
        if s.task.name == "reward":
            batches = itertools.islice(s.batches("train", 1), run.reward.stats_batches or None)
            state = reward_statistics(state, s.graphdef, batches, s.mesh)
            final["reward_mean"] = float(state.rest["reward_mean"][...])
            final["reward_std"] = float(state.rest["reward_std"][...])
        if s.first_step < run.num_steps:
            evaluated = {k: v for k, v in final.items() if k.startswith("eval/")}
            s.save(state, run.num_steps, evaluated or None)
    s.ckpt.close()
    if jax.process_index() == 0 and not (s.workdir / "tokenizer").exists():
        s.tokenizer.save_pretrained(s.workdir / "tokenizer")
    if s.model.config.lora_rank and not preempted:
        lora_lib.save_adapters(
            nnx.merge(s.graphdef, state.params, state.rest), s.workdir / "adapters"
        )
    final["skipped_steps"] = int(state.skipped)
    final["step"] = int(state.step)
    s.writer.close()
    if jax.process_index() == 0:
        (s.workdir / "final_metrics.json").write_text(json.dumps(final, indent=2, sort_keys=True))
    return final


def train_and_evaluate(
    config: TrainSettings | ml_collections.ConfigDict, workdir: str | pathlib.Path
) -> dict[str, float]:
    """Trains `config.task` as configured, evaluating periodically; returns the final metrics.

    `config` is the run's `TrainSettings`, or a training ConfigDict (turned into them here, once).
    Resumes from the newest complete checkpoint in `workdir` (parameters, optimizer, step, data
    position: the resumed run is the uninterrupted one); saves every `checkpoint_every` steps, on
    SIGTERM/SIGINT (then returns with `preempted=1`) and at the end, where the model is what the next
    stage's `init_from` loads. A non-finite step is skipped; `max_bad_steps` in a row stop the run
    with a checkpoint of the last good state. Online DPO (rounds of stages) is
    `psycho_jax.train.online.run_online_dpo`.
    """
    run = config if isinstance(config, TrainSettings) else TrainSettings.from_config(config)
    run.check_run(jax.device_count())
    if run.task == "online_dpo":
        raise ValueError(
            "task=online_dpo runs rounds of sampling, scoring and DPO stages: "
            "psycho_jax.train.online.run_online_dpo (or psycho_jax.main.run_training)"
        )
    workdir = pathlib.Path(workdir)
    ckpt_lib.check_workdir(workdir)
    session, state = start(run, workdir)
    state, final, preempted = fit(session, state)
    return finish(session, state, final, preempted)
