"""Hugging Face Llama checkpoints in and out, with no torch import.

- `load_llama(path)` reads a HF directory (`config.json` + `model.safetensors`, or shards listed in
  `model.safetensors.index.json`) straight into sharded device arrays: every device shard is read from a
  memory-mapped file with `jax.make_array_from_callback`, so a checkpoint never sits twice in host
  memory. `LlamaForCausalLM` checkpoints give a `Llama`; `LlamaForSequenceClassification` and OpenRLHF
  reward checkpoints (`score.weight`, or OpenRLHF's `value_head.weight` / `<value_head_prefix>.weight`,
  optional `mean`/`std` and `normalize_reward` in config.json) give a `RewardModel`.
- `save_llama(model, path)` writes a directory that `transformers.LlamaForCausalLM` (or
  `LlamaForSequenceClassification`) loads, streaming one tensor at a time.
- `load_tokenizer(path)` is `transformers.AutoTokenizer` on a local directory;
  `convert_llama3_tokenizer` (from `psycho_jax.data.tokenizer`) turns Meta's original `tokenizer.model`
  into one.

safetensors is read and written here directly (its format is a JSON header and raw little-endian
bytes) so that bfloat16 works without torch and reads are zero-copy slices of a memory map.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from absl import logging
from flax import nnx

from psycho_jax.core import sharding as sharding_lib
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel, RopeScaling
from psycho_jax.data.tokenizer import convert_llama3_tokenizer, load_tokenizer  # noqa: F401  (re-exported)

PathLike = str | os.PathLike

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
_CAUSAL = {"LlamaForCausalLM"}
_REWARD = {"LlamaForSequenceClassification", "LlamaForRewardModel", "RewardModel"}
# Buffers some checkpoints carry that are recomputed, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_SHARD_BYTES = 5 * 2**30


class CheckpointError(ValueError):
    """A Hugging Face checkpoint that does not match what was expected."""


# ----------------------------------------------------------------------------- safetensors


class SafetensorsFile:
    """A memory-mapped safetensors file: `file[name]` is a zero-copy numpy view."""

    def __init__(self, path: PathLike):
        self.path = pathlib.Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            try:
                header = json.loads(f.read(n))
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{self.path}: unreadable safetensors header ({e})") from e
        self.metadata = header.pop("__metadata__", None) or {}
        self.header = header
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r", offset=8 + n)

    def __iter__(self) -> Iterator[str]:
        return iter(self.header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def __getitem__(self, name: str) -> np.ndarray:
        info = self.header[name]
        if info["dtype"] not in _DTYPES:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} has unsupported dtype {info['dtype']}"
            )
        start, end = info["data_offsets"]
        return self._mm[start:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])


def write_safetensors(
    path: PathLike,
    tensors: Sequence[tuple[str, tuple[int, ...], np.dtype, Any]],
    metadata: dict[str, str] | None = None,
) -> None:
    """Streams tensors to a safetensors file.

    Args:
      tensors: (name, shape, dtype, producer) where `producer()` returns the numpy array; each is
        called once, in order, so only one tensor is in host memory at a time.
    """
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape, dtype, _ in tensors:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": _DTYPE_NAMES[np.dtype(dtype)],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = pathlib.Path(f"{path}.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape, dtype, produce in tensors:
            arr = np.ascontiguousarray(produce(), dtype=dtype)
            if arr.shape != tuple(shape):
                raise ValueError(
                    f"tensor {name}: produced shape {arr.shape}, expected {tuple(shape)}"
                )
            f.write(arr.tobytes())
    os.replace(tmp, path)


class _Checkpoint:
    """All safetensors files of a HF directory, addressed by tensor name."""

    def __init__(self, path: pathlib.Path):
        index = path / "model.safetensors.index.json"
        single = path / "model.safetensors"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [SafetensorsFile(path / f) for f in sorted(set(weight_map.values()))]
            self.where = {k: st for st in files for k in st}
            missing = sorted(set(weight_map) - set(self.where))
            if missing:
                raise CheckpointError(
                    f"{index}: tensors listed but absent from their files: {missing[:5]}"
                )
        elif single.is_file():
            st = SafetensorsFile(single)
            self.where = {k: st for k in st}
        else:
            found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            raise CheckpointError(
                f"{path}: no model.safetensors or model.safetensors.index.json (found {found}); "
                "PyTorch .bin checkpoints are not read: re-save them with safe_serialization=True"
            )

        self._stored: dict[str, str] = {}  # our name -> the name in the file, where they differ

    def alias(self, name: str, stored: str) -> None:
        """Reads tensor `stored` under `name` (e.g. OpenRLHF's `value_head.weight` as
        `score.weight`); `stored` is no longer listed under its own name."""
        self.where[name] = self.where.pop(stored)
        self._stored[name] = stored

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def __getitem__(self, name: str) -> np.ndarray:
        return self.where[name][self._stored.get(name, name)]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.where[name].shape(self._stored.get(name, name))


# ----------------------------------------------------------------------------- configs


def config_from_hf(
    hf: dict[str, Any], source: str = "config.json", **overrides: Any
) -> LlamaConfig:
    """LlamaConfig from a HF `config.json` dict; unsupported features raise naming the key."""
    if hf.get("model_type", "llama") != "llama":
        raise CheckpointError(f"{source}: model_type={hf.get('model_type')!r}, expected 'llama'")
    for key, ok in (
        ("hidden_act", "silu"),
        ("attention_bias", False),
        ("mlp_bias", False),
        ("pretraining_tp", 1),
    ):
        if key in hf and hf[key] != ok:
            raise CheckpointError(f"{source}: {key}={hf[key]!r} is not supported (expected {ok!r})")
    rope = dict(hf.get("rope_parameters") or {})
    rope.update(hf.get("rope_scaling") or {})
    theta = hf.get("rope_theta", rope.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "default":
        scaling = None
    elif rope_type == "llama3":
        try:
            scaling = RopeScaling(
                factor=float(rope["factor"]),
                low_freq_factor=float(rope["low_freq_factor"]),
                high_freq_factor=float(rope["high_freq_factor"]),
                original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
            )
        except KeyError as e:
            raise CheckpointError(f"{source}: llama3 rope scaling lacks {e.args[0]!r}") from e
    else:
        raise CheckpointError(
            f"{source}: rope_type={rope_type!r} is not supported (valid: 'default', 'llama3')"
        )
    try:
        n_heads = hf["num_attention_heads"]
        fields = dict(
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            ffn_dim=hf["intermediate_size"],
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_seq_len=hf.get("max_position_embeddings", 2048),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            initializer_range=hf.get("initializer_range", 0.02),
        )
    except KeyError as e:
        raise CheckpointError(f"{source}: missing required key {e.args[0]!r}") from e
    return LlamaConfig(**{**fields, **overrides})


def config_to_hf(
    cfg: LlamaConfig, architecture: str = "LlamaForCausalLM", dtype: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A HF `config.json` dict for `cfg` (legacy `rope_theta`/`rope_scaling` keys, read by
    transformers 4.x and 5.x)."""
    hf: dict[str, Any] = {
        "architectures": [architecture],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": cfg.initializer_range,
        "torch_dtype": dtype or cfg.param_dtype,
    }
    if cfg.rope_scaling is not None:
        hf["rope_scaling"] = {"rope_type": "llama3", **dataclasses.asdict(cfg.rope_scaling)}
    hf.update(extra)
    return hf


# ----------------------------------------------------------------------------- name table


@dataclasses.dataclass(frozen=True)
class _Entry:
    """How one of our parameters maps to HF tensors.

    Ours is `hf.T.reshape(in_shape + out_shape)` for a projection (HF stores [out, in]), or `hf`
    itself when `in_shape` is empty. `layered` parameters stack HF's per-layer tensors on axis 0.
    """

    path: tuple[str, ...]
    hf_name: str  # with "{i}" for the layer index
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    layered: bool

    def hf_shape(self) -> tuple[int, ...]:
        if not self.in_shape:
            return self.out_shape
        return (math.prod(self.out_shape), math.prod(self.in_shape))


def _name_table(cfg: LlamaConfig, reward_labels: int | None) -> list[_Entry]:
    D, N, K, H, F, V = (
        cfg.dim,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        cfg.ffn_dim,
        cfg.vocab_size,
    )
    L = "model.layers.{i}."
    layer = [
        ("input_layernorm", L + "input_layernorm.weight", (), (D,)),
        ("q_proj", L + "self_attn.q_proj.weight", (D,), (N, H)),
        ("k_proj", L + "self_attn.k_proj.weight", (D,), (K, H)),
        ("v_proj", L + "self_attn.v_proj.weight", (D,), (K, H)),
        ("o_proj", L + "self_attn.o_proj.weight", (N, H), (D,)),
        ("post_attention_layernorm", L + "post_attention_layernorm.weight", (), (D,)),
        ("gate_proj", L + "mlp.gate_proj.weight", (D,), (F,)),
        ("up_proj", L + "mlp.up_proj.weight", (D,), (F,)),
        ("down_proj", L + "mlp.down_proj.weight", (F,), (D,)),
    ]
    table = [_Entry(("model", "embed_tokens"), "model.embed_tokens.weight", (), (V, D), False)]
    table += [_Entry(("model", "layers", n), h, i, o, True) for n, h, i, o in layer]
    table.append(_Entry(("model", "norm"), "model.norm.weight", (), (D,), False))
    if reward_labels is not None:
        table.append(_Entry(("score",), "score.weight", (D,), (reward_labels,), False))
    elif not cfg.tie_embeddings:
        table.append(_Entry(("lm_head",), "lm_head.weight", (D,), (V,), False))
    return table


def _hf_names(entry: _Entry, n_layers: int) -> list[str]:
    if entry.layered:
        return [entry.hf_name.format(i=i) for i in range(n_layers)]
    return [entry.hf_name]


def _read_block(
    ckpt: _Checkpoint, name: str, entry: _Entry, index: tuple[slice, ...]
) -> np.ndarray:
    """Reads the part of one HF tensor that our (per-layer) `index` selects, in our layout."""
    if not entry.in_shape:
        return np.asarray(ckpt[name][index])
    n_in = len(entry.in_shape)
    in_idx, out_idx = index[:n_in], index[n_in:]

    def flat_range(idx, shape):
        lead = range(*idx[0].indices(shape[0]))
        inner = math.prod(shape[1:])
        return slice(lead.start * inner, lead.stop * inner), len(lead)

    rows, n_out_lead = flat_range(out_idx, entry.out_shape)
    cols, n_in_lead = flat_range(in_idx, entry.in_shape)
    block = np.asarray(ckpt[name][rows, cols]).T
    block = block.reshape((n_in_lead, *entry.in_shape[1:], n_out_lead, *entry.out_shape[1:]))
    rest = (slice(None),) + tuple(in_idx[1:]) + (slice(None),) + tuple(out_idx[1:])
    return block[rest]


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        tree = getattr(tree, p)
    return tree


# ----------------------------------------------------------------------------- load


def _detect_kind(hf: dict[str, Any], ckpt: _Checkpoint, source: str) -> str:
    archs = set(hf.get("architectures") or [])
    if "score.weight" in ckpt or archs & _REWARD:
        return "reward"
    if not archs or archs & _CAUSAL or "LlamaModel" in archs:
        return "causal"
    raise CheckpointError(
        f"{source}: architectures={sorted(archs)} is not a Llama causal LM or reward model "
        f"(valid: {sorted(_CAUSAL | _REWARD)})"
    )


def load_llama(
    path: PathLike,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: Sequence[tuple[str, Any]] = sharding_lib.DEFAULT_RULES,
    kind: str = "auto",
    **config_overrides: Any,
) -> Llama | RewardModel:
    """Loads a HF Llama directory into a `Llama` or `RewardModel`, sharded over `mesh`.

    Args:
      path: directory with `config.json` and safetensors weights.
      mesh: device mesh (default: every parameter on the first device).
      rules: logical-axis sharding rules.
      kind: "auto" (from the architecture and tensors), "causal" or "reward".
      **config_overrides: LlamaConfig fields to change, e.g. `dtype="bfloat16"`, `scan_layers=True`.
    Returns:
      The model; a reward model's `reward_mean`/`reward_std` come from config.json's `mean`/`std`.
    Raises:
      CheckpointError: naming the key or tensor when the directory does not match.
    """
    path = pathlib.Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path}: no config.json")
    hf = json.loads(config_path.read_text())
    cfg = config_from_hf(hf, str(config_path), **config_overrides)
    ckpt = _Checkpoint(path)
    # OpenRLHF names the reward head `value_head` (its default until 2024), recorded in config.json
    # as `value_head_prefix`; transformers names it `score`.
    head = hf.get("value_head_prefix") or "score"
    if "score.weight" not in ckpt and f"{head}.weight" in ckpt:
        ckpt.alias("score.weight", f"{head}.weight")
    elif "score.weight" not in ckpt and "value_head.weight" in ckpt:
        ckpt.alias("score.weight", "value_head.weight")
    if kind == "auto":
        kind = _detect_kind(hf, ckpt, str(config_path))
    if kind not in ("causal", "reward"):
        raise ValueError(f"kind={kind!r}: valid values are 'auto', 'causal', 'reward'")
    labels = None
    if kind == "reward":
        if "score.weight" not in ckpt:
            raise CheckpointError(f"{path}: reward checkpoint has no 'score.weight' tensor")
        labels = ckpt.shape("score.weight")[0]
    table = _name_table(cfg, labels)

    # Every tensor present, none unexpected, every shape as the config says.
    expected = {n: e for e in table for n in _hf_names(e, cfg.n_layers)}
    missing = sorted(set(expected) - set(ckpt.where))
    if missing:
        raise CheckpointError(
            f"{path}: missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    extra = sorted(
        k
        for k in ckpt.where
        if k not in expected
        and not k.endswith(_IGNORED_SUFFIXES)
        and not (k == "lm_head.weight" and (cfg.tie_embeddings or kind == "reward"))
    )
    if extra:
        raise CheckpointError(
            f"{path}: unexpected tensors {extra[:8]} (not part of a Llama {kind} model)"
        )
    for name, e in expected.items():
        if ckpt.shape(name) != e.hf_shape():
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {ckpt.shape(name)}, expected {e.hf_shape()} "
                "from config.json"
            )

    def make():
        if kind == "reward":
            return RewardModel(cfg, num_labels=labels, rngs=nnx.Rngs(0))
        return Llama(cfg, rngs=nnx.Rngs(0))

    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    if mesh is None:
        mesh = sharding_lib.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
    shardings = sharding_lib.state_shardings(state, mesh, rules)
    dtype = np.dtype(jnp.dtype(cfg.param_dtype))

    def load_param(entry: _Entry) -> jax.Array:
        var = _get(state, entry.path)
        shape = var.shape
        names = _hf_names(entry, cfg.n_layers)

        def callback(index):
            if not entry.layered:
                return _read_block(ckpt, names[0], entry, index).astype(dtype)
            layers = range(*index[0].indices(shape[0]))
            return np.stack(
                [_read_block(ckpt, names[i], entry, index[1:]).astype(dtype) for i in layers]
            )

        return jax.make_array_from_callback(
            shape, _get(shardings, entry.path).get_value(), callback
        )

    for entry in table:
        _get(state, entry.path).set_value(load_param(entry))
    if kind == "reward":
        for key, var in (("mean", "reward_mean"), ("std", "reward_std")):
            default = 0.0 if key == "mean" else 1.0
            value = jnp.asarray(float(hf.get(key, default)), jnp.float32)
            getattr(state, var).set_value(
                jax.device_put(value, getattr(shardings, var).get_value())
            )
    model = nnx.merge(graphdef, state)
    # Kept for `save_llama` (transformers' sequence classifier needs `pad_token_id` for batches).
    model.hf_token_ids = tuple(
        (k, hf[k])
        for k in ("bos_token_id", "eos_token_id", "pad_token_id")
        if hf.get(k) is not None
    )
    if kind == "reward":  # OpenRLHF serves such a model's rewards as (r - mean) / std
        model.normalize_reward = bool(hf.get("normalize_reward", False))
    logging.info("loaded %s Llama (%s parameters) from %s", kind, f"{cfg.num_params:,}", path)
    return model


# ----------------------------------------------------------------------------- save


def _to_host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _hf_tensors(
    model: Llama | RewardModel, dtype: np.dtype
) -> Iterator[tuple[str, tuple, np.dtype, Any]]:
    cfg = model.config
    labels = model.num_labels if isinstance(model, RewardModel) else None
    for entry in _name_table(cfg, labels):
        var = _get(model, entry.path)
        for i, name in enumerate(_hf_names(entry, cfg.n_layers)):

            def produce(var=var, i=i, entry=entry):
                x = var[...][i] if entry.layered else var[...]
                x = _to_host(x)
                if entry.in_shape:  # ours [*in, *out] -> HF [out, in]
                    x = x.reshape(math.prod(entry.in_shape), -1).T
                return x.astype(dtype)

            yield name, entry.hf_shape(), dtype, produce


def save_llama(
    model: Llama | RewardModel,
    path: PathLike,
    *,
    dtype: str | None = None,
    max_shard_bytes: int = _SHARD_BYTES,
    tokenizer: Any = None,
    **config_extra: Any,
) -> pathlib.Path:
    """Writes `model` as a HF directory (`config.json` + safetensors, sharded past `max_shard_bytes`).

    Args:
      model: a `Llama` (saved as `LlamaForCausalLM`) or `RewardModel` (saved as
        `LlamaForSequenceClassification` with `num_labels`, and `mean`/`std` in config.json as
        OpenRLHF does).
      dtype: tensor dtype on disk (default the parameter dtype).
      tokenizer: optional HF tokenizer saved alongside; its bos/eos/pad ids go into config.json.
      **config_extra: more config.json keys (e.g. `pad_token_id=...`).
    Only process 0 writes; every process must call this (arrays are gathered collectively).
    Raises ValueError for a model with LoRA adapters: `psycho_jax.core.lora.merge` it first.
    """
    path = pathlib.Path(path)
    cfg = model.config
    if cfg.lora_rank:
        raise ValueError(
            "the model has LoRA adapters, which a Hugging Face Llama directory cannot hold: "
            "save psycho_jax.core.lora.merge(model) (or the adapters with lora.save_adapters)"
        )
    dtype_name = dtype or cfg.param_dtype
    np_dtype = np.dtype(jnp.dtype(dtype_name))
    extra: dict[str, Any] = dict(getattr(model, "hf_token_ids", ()))  # of a loaded model
    if tokenizer is not None:
        extra.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    if isinstance(model, RewardModel):
        arch = "LlamaForSequenceClassification"
        extra.update(
            num_labels=model.num_labels,
            mean=float(_to_host(model.reward_mean[...])),
            std=float(_to_host(model.reward_std[...])),
        )
        if getattr(model, "normalize_reward", False):
            extra["normalize_reward"] = True
    else:
        arch = "LlamaForCausalLM"
    extra.update(config_extra)
    tensors = list(_hf_tensors(model, np_dtype))
    # Group consecutive tensors into shards of at most max_shard_bytes.
    shards: list[list] = [[]]
    size = 0
    for t in tensors:
        nbytes = math.prod(t[1]) * np_dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += nbytes
    is_writer = jax.process_index() == 0
    if is_writer:
        path.mkdir(parents=True, exist_ok=True)
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    for fname, shard in zip(names, shards, strict=True):
        if is_writer:
            write_safetensors(path / fname, shard)
        else:  # take part in the collective gathers
            for *_, produce in shard:
                produce()
    if is_writer:
        if len(shards) > 1:
            index = {
                "metadata": {
                    "total_size": sum(math.prod(t[1]) for t in tensors) * np_dtype.itemsize
                },
                "weight_map": {t[0]: f for f, s in zip(names, shards, strict=True) for t in s},
            }
            (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        hf = config_to_hf(cfg, arch, dtype_name, **extra)
        (path / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    return path
