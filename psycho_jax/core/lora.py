"""LoRA adapters: add them to a model, merge them into its base, save and load them.

The adapters live in the model (`psycho_jax.core.model`): with `LlamaConfig.lora_rank = R > 0` each target
projection W [L, *in, *out] of `Layers` has float32 `LoraParam`s `<name>_lora_a` [L, *in, R] and
`<name>_lora_b` [L, R, *out], and the forward pass adds `(lora_alpha / R) * (x @ A) @ B`. Training
(`c.lora.rank > 0`) updates only the adapters (and a reward model's new `score` head); the base stays
frozen, so DPO's reference is the same graph with zero adapters: no second copy of the weights.

    model = add_adapters(base, rank=16)           # fresh adapters (B = 0: computes the base exactly)
    merged = merge(model)                         # W + (alpha / R) * A @ B, no adapters, lora_rank 0
    save_adapters(model, "/tmp/adapters")         # PEFT's layout, a few MB
    model = load_adapters(base, "/tmp/adapters")  # onto the same base

`save_adapters` writes what Hugging Face PEFT writes (`adapter_config.json`, `adapter_model.safetensors`
with `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` [R, in] and `lora_B.weight`
[out, R]; a reward model's head as `base_model.model.score.weight`), so the adapters also load with
`peft.PeftModel.from_pretrained` onto the base exported by `psycho_jax.export`.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from psycho_jax.core import hf, sharding
from psycho_jax.core.model import (
    LORA_TARGETS,
    Llama,
    LoraParam,
    RewardModel,
    lora_axes,
    lora_init,
    lora_io,
)

# Where each projection sits in a Hugging Face Llama layer.
_MODULES = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}
_PREFIX = "base_model.model."  # PEFT's wrapper around the transformers model


def _set_config(model: Llama | RewardModel, cfg) -> None:
    model.config = cfg
    model.model.config = cfg


def add_adapters(
    model: Llama | RewardModel,
    rank: int,
    alpha: float = 16.0,
    targets: Sequence[str] = LORA_TARGETS,
    *,
    seed: int = 0,
    rules: Sequence[tuple[str, Any]] = sharding.DEFAULT_RULES,
) -> Llama | RewardModel:
    """Adds fresh adapters to a model without any (in place; returns it).

    The adapters are created directly on the mesh of the model's weights, sharded by `rules`.
    """
    if model.config.lora_rank:
        raise ValueError("the model already has LoRA adapters: merge() them first")
    cfg = model.config.replace(lora_rank=rank, lora_alpha=float(alpha), lora_targets=tuple(targets))
    axes = lora_axes(cfg)
    make = lambda: lora_init(cfg, jax.random.key(seed))
    shapes = jax.eval_shape(make)
    mesh = getattr(model.model.layers.q_proj[...].sharding, "mesh", None)
    if isinstance(mesh, jax.sharding.Mesh):
        out = {
            k: jax.sharding.NamedSharding(
                mesh, sharding.logical_to_spec(axes[k], s.shape, mesh, rules)
            )
            for k, s in shapes.items()
        }
        values = jax.jit(make, out_shardings=out)()
    else:
        values = jax.jit(make)()
    for name, value in values.items():
        setattr(model.model.layers, name, LoraParam(value, logical_axes=axes[name]))
    _set_config(model, cfg)
    return model


def adapter_state(model: nnx.Module) -> nnx.State:
    """The adapters of a model (`LoraParam`s), as an `nnx.State`; empty without LoRA."""
    return nnx.state(model, LoraParam)


def _merged(w: jax.Array, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
    """W + scale * A @ B in float32, in W's dtype. w [L,*in,*out], a [L,*in,R], b [L,R,*out]."""
    n, r = a.shape[0], a.shape[-1]
    delta = jnp.einsum(
        "LIR,LRO->LIO",
        a.reshape(n, -1, r).astype(jnp.float32),
        b.reshape(n, r, -1).astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
    )
    return (w.astype(jnp.float32) + scale * delta.reshape(w.shape)).astype(w.dtype)


def merge(model: Llama | RewardModel) -> Llama | RewardModel:
    """A copy of `model` with the adapters folded into the base: W + (alpha / R) * A @ B.

    The copy has no adapters and `lora_rank = 0`; `model` itself is unchanged. A model without
    adapters is returned as it is.
    """
    cfg = model.config
    if not cfg.lora_rank:
        return model
    model = nnx.clone(model)
    layers = model.model.layers
    for t in cfg.lora_targets:
        w, a, b = (getattr(layers, n) for n in (t, f"{t}_lora_a", f"{t}_lora_b"))
        fold = jax.jit(_merged, static_argnums=3, out_shardings=w[...].sharding)
        w[...] = fold(w[...], a[...], b[...], cfg.lora_scale)
        delattr(layers, f"{t}_lora_a")
        delattr(layers, f"{t}_lora_b")
    _set_config(model, cfg.replace(lora_rank=0))
    return model


# ----------------------------------------------------------------------------- files


def _peft_name(target: str, layer: int, which: str) -> str:
    return f"{_PREFIX}model.layers.{layer}.{_MODULES[target]}.{target}.lora_{which}.weight"


def save_adapters(model: Llama | RewardModel, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the adapters (and a reward model's `score` head) in PEFT's layout to `path`.

    Only process 0 writes; every process must call this (sharded arrays are gathered collectively).
    """
    cfg = model.config
    if not cfg.lora_rank:
        raise ValueError("the model has no LoRA adapters (lora_rank=0)")
    path = pathlib.Path(path)
    io = lora_io(cfg)
    layers = model.model.layers
    f32 = np.dtype(np.float32)
    tensors = []
    for t in cfg.lora_targets:
        n_in, n_out = math.prod(io[t][0]), math.prod(io[t][2])
        a, b = getattr(layers, f"{t}_lora_a"), getattr(layers, f"{t}_lora_b")
        for i in range(cfg.n_layers):  # ours [*in, R] and [R, *out] -> PEFT's [R, in] and [out, R]
            tensors.append(
                (
                    _peft_name(t, i, "A"),
                    (cfg.lora_rank, n_in),
                    f32,
                    lambda a=a, i=i, n=n_in: hf._to_host(a[...][i]).reshape(n, -1).T,
                )
            )
            tensors.append(
                (
                    _peft_name(t, i, "B"),
                    (n_out, cfg.lora_rank),
                    f32,
                    lambda b=b, i=i, n=n_out: hf._to_host(b[...][i]).reshape(-1, n).T,
                )
            )
    reward = isinstance(model, RewardModel)
    if reward:
        shape = (model.num_labels, cfg.dim)
        tensors.append(
            (f"{_PREFIX}score.weight", shape, f32, lambda: hf._to_host(model.score[...]).T)
        )
    if jax.process_index() != 0:  # take part in the gathers only
        for *_, produce in tensors:
            produce()
        return path
    path.mkdir(parents=True, exist_ok=True)
    hf.write_safetensors(path / "adapter_model.safetensors", tensors)
    config = {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS" if reward else "CAUSAL_LM",
        "r": cfg.lora_rank,
        "lora_alpha": cfg.lora_alpha,
        "target_modules": list(cfg.lora_targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": ["score"] if reward else None,
        "base_model_name_or_path": None,
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_adapters(
    model: Llama | RewardModel,
    path: str | pathlib.Path,
    *,
    rules: Sequence[tuple[str, Any]] = sharding.DEFAULT_RULES,
) -> Llama | RewardModel:
    """Puts the adapters of `path` (written by `save_adapters`, or PEFT's LoRA) onto a model without
    adapters (in place; returns it). A reward model's `score` head is replaced when the file has one.
    """
    path = pathlib.Path(path)
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no adapter_config.json (not a LoRA adapter directory)")
    config = json.loads(config_path.read_text())
    special = ("use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "layers_to_transform")
    if config.get("peft_type", "LORA") != "LORA" or any(config.get(k) for k in special):
        raise ValueError(
            f"{config_path}: only plain LoRA adapters are supported (no {', '.join(special)})"
        )
    targets = config["target_modules"]
    targets = [targets] if isinstance(targets, str) else list(targets)
    if set(targets) - set(LORA_TARGETS):
        raise ValueError(
            f"{config_path}: target_modules={targets}; supported: {', '.join(LORA_TARGETS)}"
        )
    targets = [t for t in LORA_TARGETS if t in targets]  # our order
    add_adapters(model, config["r"], config["lora_alpha"], targets, rules=rules)
    cfg = model.config
    st = hf.SafetensorsFile(path / "adapter_model.safetensors")
    io = lora_io(cfg)
    layers = model.model.layers
    for t in targets:
        in_shape, _, out_shape, _ = io[t]
        for which, shape in (("A", (*in_shape, cfg.lora_rank)), ("B", (cfg.lora_rank, *out_shape))):
            var = getattr(layers, f"{t}_lora_{which.lower()}")
            names = [_peft_name(t, i, which) for i in range(cfg.n_layers)]
            missing = [n for n in names if n not in st.header]
            if missing:
                raise ValueError(f"{path}: missing adapter tensors {missing[:4]}")
            value = np.stack([np.asarray(st[n], np.float32).T.reshape(shape) for n in names])
            var[...] = jax.device_put(value, var[...].sharding)
    score = f"{_PREFIX}score.weight"
    if score in st.header:
        if not isinstance(model, RewardModel):
            raise ValueError(f"{path} holds a reward head (score.weight); the model is an LM")
        value = np.asarray(st[score]).T.astype(model.score[...].dtype)
        if value.shape != model.score[...].shape:
            raise ValueError(
                f"{path}: score.weight is {value.shape[::-1]}, the model's head "
                f"{model.score[...].shape[::-1]}"
            )
        model.score[...] = jax.device_put(value, model.score[...].sharding)
    return model
