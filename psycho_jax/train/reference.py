"""Precomputed DPO reference log-probs: one pass of the reference model, cached on disk, reused.

For large models a live reference costs a second copy of the weights and a third more compute per step.
Instead the reference's summed reply log-probs of every training pair are computed once, stored as
`[N, 2]` float32 (chosen, rejected) under `cache_dir/<key>.npy`, where the key hashes the tokenized
dataset, the tokenizer and the reference model's weights, and attached to each batch by its
`example_index`. A second run with the same data, tokenizer and reference loads the file.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from psycho_jax.core import sharding
from psycho_jax.data import batching
from psycho_jax.data.templating import TokenizedPair
from psycho_jax.train import tasks


def weights_fingerprint(model: nnx.Module) -> str:
    """A hash of the model's weights (per-tensor sums and sums of squares in float64)."""
    stats = []
    for x in jax.tree.leaves(nnx.state(model, nnx.Param)):
        x32 = x.astype(jnp.float32)
        # Rounded: summation order (hence the last bits) depends on how the array is sharded.
        total, sq = float(jnp.sum(x32)), float(jnp.sum(x32 * x32))
        stats.append((x.shape, str(x.dtype), f"{total:.6g}", f"{sq:.6g}"))
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def dataset_fingerprint(pairs: Sequence[TokenizedPair], tokenizer) -> str:
    h = hashlib.sha256()
    h.update(
        tokenizer.backend_tokenizer.to_str().encode()
        if hasattr(tokenizer, "backend_tokenizer")
        else repr(tokenizer).encode()
    )
    for p in pairs:
        for part in (p.prompt, p.chosen, p.rejected):
            h.update(np.asarray(part, np.int32).tobytes())
            h.update(b"|")
    return h.hexdigest()[:16]


def compute_reference_logps(
    model: nnx.Module, pairs: Sequence[TokenizedPair], pad_id: int, batch_size: int, mesh
) -> np.ndarray:
    """Summed reply log-probs `[N, 2]` of every pair under `model`, in `pairs` order."""
    forward = nnx.jit(lambda m, b: tasks.DPO.forward(m, b)[0])
    out = np.zeros((len(pairs), 2), np.float32)
    lengths = [batching.pair_length(p) for p in pairs]
    buckets = batching.default_buckets(max(lengths))
    n_proc, me = jax.process_count(), jax.process_index()
    with jax.set_mesh(mesh):
        for start in range(0, len(pairs), batch_size):
            chunk = list(pairs[start : start + batch_size])
            n_real = len(chunk)
            chunk += [chunk[-1]] * (
                batch_size - n_real
            )  # a fixed shape: one compilation per bucket
            seq_len = batching.bucket_length(max(lengths[start : start + n_real]), buckets)
            batch = batching.collate_pairs(chunk, seq_len, pad_id, with_ratings=False)
            rows = batch_size // n_proc
            local = {
                k: v[me * rows : (me + 1) * rows]
                for k, v in batch.items()
                if k in ("tokens", "positions", "attention_mask", "loss_mask")
            }
            logps = forward(model, sharding.shard_batch(local, mesh))
            if n_proc > 1:
                from jax.experimental import multihost_utils

                logps = multihost_utils.process_allgather(logps, tiled=True)
            out[start : start + n_real] = np.asarray(logps)[:n_real]
    return out


def reference_table(
    model: nnx.Module,
    pairs: Sequence[TokenizedPair],
    tokenizer,
    batch_size: int,
    mesh,
    cache_dir: str | pathlib.Path,
) -> np.ndarray:
    """The cached `[N, 2]` reference log-probs for `pairs` (computed and saved on a miss)."""
    cache_dir = pathlib.Path(cache_dir).expanduser()
    key = f"{dataset_fingerprint(pairs, tokenizer)}-{weights_fingerprint(model)}"
    path = cache_dir / f"ref_logps-{key}.npy"
    exists = path.is_file()
    if jax.process_count() > 1:  # every host must take the same branch
        from jax.experimental import multihost_utils

        exists = bool(multihost_utils.broadcast_one_to_all(np.asarray(exists)))
    if exists:
        table = np.load(path)
        if table.shape == (len(pairs), 2):
            logging.info("reference log-probs: reusing %s", path)
            return table
    table = compute_reference_logps(model, pairs, tokenizer.pad_token_id, batch_size, mesh)
    if jax.process_index() == 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
        logging.info("reference log-probs: computed %d pairs, saved %s", len(pairs), path)
    return table


def by_example_index(pairs: Sequence[TokenizedPair], table: np.ndarray) -> np.ndarray:
    """Re-indexes a table in `pairs` order by each pair's `index` (its `example_index`)."""
    full = np.zeros((max(p.index for p in pairs) + 1, 2), np.float32)
    full[[p.index for p in pairs]] = table
    return full


def attach(batches: Iterator[dict[str, Any]], table: np.ndarray) -> Iterator[dict[str, Any]]:
    """Adds `ref_logps` [B,2] to each batch, looked up by `example_index`."""
    for batch in batches:
        yield {**batch, "ref_logps": table[batch["example_index"]]}
