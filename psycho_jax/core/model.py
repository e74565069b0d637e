"""The Llama 3.x model in Flax NNX: a causal LM and a Bradley-Terry reward model.

Numerically Hugging Face's `LlamaForCausalLM` / `LlamaForSequenceClassification` (the parity tests hold
float32 logits to 1e-4). Parameter names follow Hugging Face's, so importing weights is a name table
(`psycho_jax.core.hf`).

Einsum letters: B batch, T query length, S key length (cache slots), D model dim, N query heads,
K key/value heads, G query heads per kv head (N = K * G), H head dim, F MLP dim, V vocab, L layers,
R LoRA rank.

Layer parameters are stored stacked along a leading `layers` axis ([L, ...]) whether or not the forward
pass scans over them, so a checkpoint, the Hugging Face name table and the sharding rules are the same
for `scan_layers=True` and `False`.

LoRA (`lora_rank > 0`): each projection named in `lora_targets` gets float32 adapters `<name>_lora_a`
[L, *in, R] and `<name>_lora_b` [L, R, *out] (a `LoraParam`, beside the base weight in `Layers`), and the
layer computes `x @ W + (alpha / R) * (x @ A) @ B` without ever forming `W + BA`. B starts at zero, so a
fresh LoRA model computes exactly its base. `psycho_jax.core.lora` merges, saves and loads adapters.

The KV cache is functional: a dict `{"k": [L,B,S,K,H], "v": [L,B,S,K,H], "mask": [B,S] bool,
"end_index": int32[]}` passed in and returned. `end_index` is the first free slot; `mask` marks slots
that hold real (non-pad) tokens, so left-padded prompts decode correctly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from psycho_jax.core import kernels

Array = jax.Array
Cache = dict[str, Array]

ATTENTION_IMPLS = ("auto", "xla", "custom", "einsum")
PLATFORMS = ("", "cpu", "tpu", "gpu")
# Projections that can carry LoRA adapters (Hugging Face / PEFT module names).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# LlamaConfig fields that choose how a model computes, not what: a checkpoint loads under any values
# of these (`psycho_jax.train.checkpoint`); every other field but `initializer_range` is its architecture.
NUMERICS = (
    "dtype",
    "param_dtype",
    "attention",
    "remat",
    "scan_layers",
    "head_chunk",
    "head_keep_mib",
    "attention_blocks",
)


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3 ("llama3") rotary frequency scaling, as in Hugging Face's `rope_scaling`."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture and numerics of a Llama 3.x model.

    Attributes:
      vocab_size: V.
      dim: model width D (HF `hidden_size`).
      n_layers: L (HF `num_hidden_layers`).
      n_heads: N query heads.
      n_kv_heads: K key/value heads (grouped-query attention when K < N).
      head_dim: H (HF `head_dim`, default D // N).
      ffn_dim: F, the SwiGLU hidden width (HF `intermediate_size`).
      rms_norm_eps: RMSNorm epsilon.
      rope_theta: rotary base.
      rope_scaling: None for default rotary frequencies, or the `llama3` scaling.
      max_seq_len: HF `max_position_embeddings` (kept for export; rotary needs no table).
      tie_embeddings: share the input embedding with the output projection.
      param_dtype: dtype parameters are stored in.
      dtype: compute dtype of matmuls; norms, softmax, logits and rewards are always float32.
      attention: "auto" (default: "custom" when compiling for CPU, "xla" for any other target
        (`platform`); "xla" whenever a KV cache is used), "xla" for `jax.nn.dot_product_attention` (cuDNN's fused kernel on GPU), "custom"
        for `kernels.attention` (grouped heads, hand-written backward: the CPU fast path) or
        "einsum", the plain reference implementation.
      remat: "none", "full" (recompute each block), "dots" (save matmul outputs, recompute the
        rest) or "attention" (save each layer's attention output, recompute the rest: the
        backward pass then runs the attention forward once, not twice).
      scan_layers: apply the layers with `jax.lax.scan` (one compiled block) instead of a Python loop.
      head_chunk: training log-probs (`Llama.target_logprobs`) apply the output projection to this
        many positions per row at a time and only to target positions (`kernels.head_logprobs`:
        no [B,T,V] logits in memory, prompt tokens skipped); 0 materialises the full logits.
      head_keep_mib: for a non-linear loss of the log-probs (the pair losses), the chunked head
        keeps its chunks' softmax probabilities for the backward pass, instead of recomputing
        their logits there, when the batch's [B,T,V] float32 probabilities take at most this many
        MiB (one of the head's four matmuls saved); 0 always recomputes (O(B x chunk x V) memory).
      attention_blocks: the "custom" kernel's self-attention (training, prefill without a cache)
        in this many causal query blocks (`kernels.causal_attention`: key blocks above the
        diagonal skipped); 1 computes every query x key score. Ignored unless T is a multiple.
        0 (default) = automatic (`attention_block_count`: blocks of at least 256 queries, at
        most 8 blocks, and 2 from 256 tokens: 1 below 256 tokens, 2 at 256 and 512).
      initializer_range: stddev of the normal initialiser (HF's default 0.02).
      lora_rank: R of the LoRA adapters; 0 = no adapters.
      lora_alpha: LoRA scale numerator: the update is (lora_alpha / lora_rank) * A @ B.
      lora_targets: the projections (names from `LORA_TARGETS`) that carry adapters.
      platform: the platform the model's programs are compiled for: "" (default) the default
        backend of the machine running it, or "cpu", "tpu", "gpu" (the mesh's devices, set by
        whoever compiles for other devices than this machine's: `memory.plan` for a TPU slice).
        It picks `attention="auto"` and the CPU-only paths of `psycho_jax.core.kernels`; never saved
        with a checkpoint.
    """

    vocab_size: int = 128256
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    ffn_dim: int = 14336
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: RopeScaling | None = RopeScaling()
    max_seq_len: int = 131072
    tie_embeddings: bool = False
    param_dtype: str = "float32"
    dtype: str = "float32"
    attention: Literal["auto", "xla", "custom", "einsum"] = "auto"
    remat: Literal["none", "full", "dots", "attention"] = "none"
    scan_layers: bool = False
    head_chunk: int = 128
    head_keep_mib: int = 512
    attention_blocks: int = 0
    initializer_range: float = 0.02
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    platform: str = ""

    @property
    def target(self) -> str:
        """The platform programs are compiled for: `platform`, or this machine's default backend."""
        p = self.platform or jax.default_backend()
        return "gpu" if p in ("cuda", "rocm") else p

    def keeps_head_probs(self, rows: int, seq: int) -> bool:
        """Whether the chunked head keeps a `rows` x `seq` batch's [B,T,V] float32 softmax
        probabilities for a pair loss's backward pass (`head_keep_mib`) instead of recomputing them."""
        return (
            bool(self.head_chunk) and rows * seq * self.vocab_size * 4 <= self.head_keep_mib << 20
        )

    def __post_init__(self):
        # A tuple even when read back from JSON (a list): the config must stay hashable.
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        errors = []
        for name in (
            "vocab_size",
            "dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "ffn_dim",
        ):
            if getattr(self, name) <= 0:
                errors.append(f"{name}={getattr(self, name)} must be positive")
        if self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads:
            errors.append(
                f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}"
            )
        if self.head_dim % 2:
            errors.append(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.attention not in ATTENTION_IMPLS:
            valid = ", ".join(repr(a) for a in ATTENTION_IMPLS)
            errors.append(f"attention={self.attention!r}: valid values are {valid}")
        if self.remat not in _REMAT_POLICIES:
            valid = ", ".join(map(repr, _REMAT_POLICIES))
            errors.append(f"remat={self.remat!r}: valid values are {valid}")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                errors.append(f"{name}={getattr(self, name)!r}: use float32, bfloat16 or float16")
        if self.platform not in PLATFORMS:
            errors.append(f"platform={self.platform!r}: valid values are {PLATFORMS}")
        if self.attention_blocks < 0:
            errors.append(f"attention_blocks={self.attention_blocks} must be >= 0 (0: automatic)")
        if self.head_chunk < 0:
            errors.append(f"head_chunk={self.head_chunk} must be >= 0 (0: full logits)")
        if self.head_keep_mib < 0:
            errors.append(f"head_keep_mib={self.head_keep_mib} must be >= 0 (0: recompute)")
        if self.lora_rank < 0:
            errors.append(f"lora_rank={self.lora_rank} must be >= 0 (0: no adapters)")
        if self.lora_rank and self.lora_alpha <= 0:
            errors.append(f"lora_alpha={self.lora_alpha} must be positive")
        unknown = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if unknown or len(set(self.lora_targets)) != len(self.lora_targets):
            errors.append(
                f"lora_targets={self.lora_targets!r}: distinct names from {', '.join(LORA_TARGETS)}"
            )
        if self.lora_rank and not self.lora_targets:
            errors.append("lora_targets is empty but lora_rank > 0")
        if errors:
            raise ValueError("Invalid LlamaConfig: " + "; ".join(errors))

    def replace(self, **changes: Any) -> LlamaConfig:
        return dataclasses.replace(self, **changes)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the function the model computes: shapes, rotary base and scaling,
        norm epsilon, tied embeddings, LoRA layout (everything but `NUMERICS` and the initialiser)."""
        skip = (*NUMERICS, "initializer_range")
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }

    @property
    def num_params(self) -> int:
        """Analytic count of the base parameters (equals `jax.eval_shape` of the model without
        adapters; the adapters are `num_lora_params`)."""
        d, f, h = self.dim, self.ffn_dim, self.head_dim
        attn = d * h * (self.n_heads * 2 + self.n_kv_heads * 2)
        layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_embeddings else self.vocab_size * d
        return self.vocab_size * d + self.n_layers * layer + d + head

    @property
    def num_lora_params(self) -> int:
        """Parameters of the LoRA adapters (0 without)."""
        if not self.lora_rank:
            return 0
        io = lora_io(self)
        per_layer = sum(math.prod(io[t][0]) + math.prod(io[t][2]) for t in self.lora_targets)
        return self.n_layers * self.lora_rank * per_layer

    @property
    def lora_scale(self) -> float:
        """alpha / rank: the factor of the adapters' update."""
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    # Presets. Shapes are those of the published checkpoints' config.json.
    @classmethod
    def tiny(cls, **kw: Any) -> LlamaConfig:
        """A few layers and ~30k parameters: for CPU unit tests."""
        base = dict(
            vocab_size=256,
            dim=32,
            n_layers=2,
            n_heads=4,
            n_kv_heads=2,
            head_dim=8,
            ffn_dim=64,
            rope_theta=10000.0,
            rope_scaling=None,
            max_seq_len=512,
        )
        return cls(**{**base, **kw})

    @classmethod
    def llama3_1b(cls, **kw: Any) -> LlamaConfig:
        """Llama 3.2 1B: 1,235,814,400 parameters, tied embeddings."""
        base = dict(
            dim=2048,
            n_layers=16,
            n_heads=32,
            n_kv_heads=8,
            head_dim=64,
            ffn_dim=8192,
            rope_scaling=RopeScaling(factor=32.0),
            tie_embeddings=True,
        )
        return cls(**{**base, **kw})

    @classmethod
    def llama3_3b(cls, **kw: Any) -> LlamaConfig:
        """Llama 3.2 3B: 3,212,749,824 parameters, tied embeddings."""
        base = dict(
            dim=3072,
            n_layers=28,
            n_heads=24,
            n_kv_heads=8,
            head_dim=128,
            ffn_dim=8192,
            rope_scaling=RopeScaling(factor=32.0),
            tie_embeddings=True,
        )
        return cls(**{**base, **kw})

    @classmethod
    def llama3_8b(cls, **kw: Any) -> LlamaConfig:
        """Llama 3.1 8B: 8,030,261,248 parameters."""
        return cls(**kw)

    @classmethod
    def llama3_70b(cls, **kw: Any) -> LlamaConfig:
        """Llama 3.1 70B: 70,553,706,496 parameters."""
        base = dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128, ffn_dim=28672)
        return cls(**{**base, **kw})

    @classmethod
    def preset(cls, name: str, **kw: Any) -> LlamaConfig:
        if name not in PRESETS:
            raise ValueError(f"Unknown LlamaConfig preset {name!r}; valid: {', '.join(PRESETS)}")
        return getattr(cls, name)(**kw)


PRESETS = ("tiny", "llama3_1b", "llama3_3b", "llama3_8b", "llama3_70b")
"""The names `LlamaConfig.preset` knows (its classmethods of the same names)."""


# ----------------------------------------------------------------------------- building blocks


def _param(
    rngs: nnx.Rngs,
    shape: tuple[int, ...],
    axes: tuple[str | None, ...],
    cfg: LlamaConfig,
    init: str = "normal",
) -> nnx.Param:
    """A parameter carrying its logical axis names (read by `psycho_jax.core.sharding`)."""
    dtype = jnp.dtype(cfg.param_dtype)
    if init == "ones":
        value = jnp.ones(shape, dtype)
    else:
        value = cfg.initializer_range * jax.random.normal(rngs.params(), shape, dtype)
    return nnx.Param(value, logical_axes=axes)


class LoraParam(nnx.Param):
    """A LoRA adapter matrix: a `Param`, the only kind trained when the model has adapters."""


def lora_io(cfg: LlamaConfig) -> dict[str, tuple[tuple[int, ...], tuple, tuple[int, ...], tuple]]:
    """Per projection: (input shape, its logical axes, output shape, its logical axes), as in `Layers`
    (the weight is [L, *in, *out])."""
    D, N, K, H, F = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim
    embed, mlp = ((D,), ("embed",)), ((F,), ("mlp",))
    return {
        "q_proj": (*embed, (N, H), ("heads", "head_dim")),
        "k_proj": (*embed, (K, H), ("kv_heads", "head_dim")),
        "v_proj": (*embed, (K, H), ("kv_heads", "head_dim")),
        "o_proj": ((N, H), ("heads", "head_dim"), *embed),
        "gate_proj": (*embed, *mlp),
        "up_proj": (*embed, *mlp),
        "down_proj": (*mlp, *embed),
    }


def lora_axes(cfg: LlamaConfig) -> dict[str, tuple[str | None, ...]]:
    """Logical axes of every adapter: A [L, *in, R], B [L, R, *out]; R is never sharded."""
    io = lora_io(cfg)
    axes = {}
    for t in cfg.lora_targets:
        _, in_axes, _, out_axes = io[t]
        axes[f"{t}_lora_a"] = ("layers", *in_axes, None)
        axes[f"{t}_lora_b"] = ("layers", None, *out_axes)
    return axes


def lora_init(cfg: LlamaConfig, key: Array) -> dict[str, Array]:
    """Fresh float32 adapters: A uniform in +-1/sqrt(fan_in) (PEFT's kaiming-uniform), B zero."""
    io = lora_io(cfg)
    keys = jax.random.split(key, len(cfg.lora_targets))
    out = {}
    for t, k in zip(cfg.lora_targets, keys, strict=True):
        in_shape, _, out_shape, _ = io[t]
        bound = 1.0 / math.sqrt(math.prod(in_shape))
        a_shape = (cfg.n_layers, *in_shape, cfg.lora_rank)
        out[f"{t}_lora_a"] = jax.random.uniform(k, a_shape, jnp.float32, -bound, bound)
        out[f"{t}_lora_b"] = jnp.zeros((cfg.n_layers, cfg.lora_rank, *out_shape), jnp.float32)
    return out


def trainable_filter(model: nnx.Module) -> Any:
    """The variables a train step updates: every `Param`, or with LoRA the adapters only (plus a
    reward model's `score` head, which is new). `nnx.split(model, trainable_filter(model), ...)`."""
    if not model.config.lora_rank:
        return nnx.Param
    return nnx.Any(LoraParam, nnx.PathContains("score"))


def rms_norm(x: Array, weight: Array, eps: float) -> Array:
    """RMSNorm in float32, as HF: x / rms(x) * weight. [..., D] -> [..., D] float32
    (`kernels.rms_norm`: its backward pass keeps x and the reciprocal RMS only)."""
    return kernels.rms_norm(x, weight, eps)


def rope_frequencies(cfg: LlamaConfig) -> Array:
    """Inverse rotary frequencies [H/2] in float32, with the `llama3` scaling when configured."""
    h = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h))
    s = cfg.rope_scaling
    if s is None:
        return inv_freq
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, smoothed, scaled)


def resolve_attention(impl: str, cached: bool, platform: str = "") -> str:
    """The implementation "auto" stands for: "custom" for a CPU target (`platform`, "" = the default
    backend) without a KV cache, else "xla"."""
    if impl != "auto":
        return impl
    return "custom" if kernels.on_cpu(platform) and not cached else "xla"


def attention_block_count(cfg: LlamaConfig, t: int) -> int:
    """The causal query blocks of `cfg.attention_blocks` for a T-token self-attention: the
    configured count, or with 0 the most blocks of at least 256 queries (at most 8) that divide T,
    and 2 from 256 tokens on. Paired CPU runs (bench/RESULTS.md): at 512 tokens 2 blocks +4-12%
    tokens/s over 1, for +2% peak memory, and 4 blocks of 128 no faster than 2; at 256 tokens 2
    blocks of 128 +0-8% (median +4%) over 1, for +0.5% peak memory."""
    if cfg.attention_blocks:
        return cfg.attention_blocks
    blocks = max(min(t // 256, 8), 2 if t >= 256 else 1)  # >= 1
    while blocks > 1 and t % blocks:
        blocks -= 1
    return blocks


def attention(q: Array, k: Array, v: Array, mask: Array, impl: str, platform: str = "") -> Array:
    """Grouped-query attention with a boolean mask.

    Args:
      q: [B,T,N,H]; k, v: [B,S,K,H]; mask: [B,T,S] bool (True: may attend).
      impl: "xla" (`jax.nn.dot_product_attention`), "custom" (`kernels.attention`) or "einsum"
        (explicit float32 softmax); "auto" as `resolve_attention` without a cache.
      platform: the target ("" = the default backend; `LlamaConfig.platform`).
    Returns:
      [B,T,N,H] in q's dtype.
    """
    impl = resolve_attention(impl, cached=False, platform=platform)
    if impl == "custom":
        return kernels.attention(q, k, v, mask, platform)
    if impl == "xla":
        return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, :, :])
    b, t, n, h = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, n // kv, h)
    logits = jnp.einsum("BTKGH,BSKH->BKGTS", qg, k, preferred_element_type=jnp.float32)
    logits = logits / jnp.sqrt(jnp.float32(h))
    logits = jnp.where(mask[:, None, None, :, :], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("BKGTS,BSKH->BTKGH", probs, v)
    return out.reshape(b, t, n, h)


class Layers(nnx.Module):
    """All decoder layers' parameters, stacked along a leading `layers` axis (HF names)."""

    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        L, D, N, K, H, F = (
            cfg.n_layers,
            cfg.dim,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.head_dim,
            cfg.ffn_dim,
        )
        p = functools.partial(_param, rngs, cfg=cfg)
        self.input_layernorm = p((L, D), ("layers", "norm"), init="ones")
        self.q_proj = p((L, D, N, H), ("layers", "embed", "heads", "head_dim"))
        self.k_proj = p((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim"))
        self.v_proj = p((L, D, K, H), ("layers", "embed", "kv_heads", "head_dim"))
        self.o_proj = p((L, N, H, D), ("layers", "heads", "head_dim", "embed"))
        self.post_attention_layernorm = p((L, D), ("layers", "norm"), init="ones")
        self.gate_proj = p((L, D, F), ("layers", "embed", "mlp"))
        self.up_proj = p((L, D, F), ("layers", "embed", "mlp"))
        self.down_proj = p((L, F, D), ("layers", "mlp", "embed"))

    def add_lora(self, cfg: LlamaConfig, key: Array) -> None:
        """Adds fresh adapters (`lora_init`) for `cfg.lora_targets`."""
        axes = lora_axes(cfg)
        for name, value in lora_init(cfg, key).items():
            setattr(self, name, LoraParam(value, logical_axes=axes[name]))


def _project(eq: str, x: Array, w: dict[str, Array], name: str, cfg: LlamaConfig) -> Array:
    """`einsum(eq, x, W)`, plus `scale * (x @ A) @ B` when `name` has adapters (W + BA is never
    formed: the adapters cost O(R) per token)."""
    dt = jnp.dtype(cfg.dtype)
    y = kernels.project(eq, x, w[name].astype(dt), None, cfg.target)
    a = w.get(f"{name}_lora_a")
    if a is None:
        return y
    xa = jnp.tensordot(x, a.astype(dt), axes=a.ndim - 1)  # [B,T,*in] x [*in,R] -> [B,T,R]
    return y + jnp.tensordot(xa * cfg.lora_scale, w[f"{name}_lora_b"].astype(dt), axes=1)


def decoder_layer(
    w: dict[str, Array],
    x: Array,
    positions: Array,
    mask: Array,
    kv: tuple[Array, Array] | None,
    end_index: Array | None,
    rope: tuple[Array, Array],
    cfg: LlamaConfig,
    query_index: Array | None = None,
) -> tuple[Array, tuple[Array, Array] | None]:
    """One pre-norm decoder layer.

    Args:
      w: one layer's parameters (the `Layers` names without the leading L axis), adapters included.
      x: residual stream [B,T,D] in the compute dtype.
      positions: [B,T] int rotary positions.
      mask: [B,T,S] bool attention mask (S = T without a cache, else cache slots).
      kv: this layer's cache (k, v), each [B,S,K,H], or None.
      end_index: first free cache slot (int32 scalar) when `kv` is given.
      rope: the rotary (cos, sin) tables of `positions`, each [B,T,1,H/2] (`kernels.rope_tables`).
      query_index: [B,R] int positions (no cache): keys and values are computed for all T tokens,
        but queries, the output projection and the MLP only for these R rows (a reward model's
        last layer, read at R positions, does that much of its work).
    Returns:
      The new residual stream [B,T,D] (with `query_index`: [B,R,D] at those positions) and the
      updated (k, v) or None.
    """
    dt = jnp.dtype(cfg.dtype)
    h = rms_norm(x, w["input_layernorm"], cfg.rms_norm_eps).astype(dt)
    k = _project("BTD,DKH->BTKH", h, w, "k_proj", cfg)
    v = _project("BTD,DKH->BTKH", h, w, "v_proj", cfg)
    k = kernels.rope(k, *rope)
    if query_index is not None:
        if kv is not None:
            raise ValueError("query_index cannot be combined with a KV cache")
        x, h, mask = _rows(x, query_index), _rows(h, query_index), _rows(mask, query_index)
        rope = tuple(_rows(r, query_index) for r in rope)
    q = _project("BTD,DNH->BTNH", h, w, "q_proj", cfg)
    q = kernels.rope(q, *rope)
    if kv is not None:
        zero = jnp.zeros((), jnp.int32)
        k_cache = jax.lax.dynamic_update_slice(
            kv[0], k.astype(kv[0].dtype), (zero, end_index, zero, zero)
        )
        v_cache = jax.lax.dynamic_update_slice(
            kv[1], v.astype(kv[1].dtype), (zero, end_index, zero, zero)
        )
        k, v, kv = k_cache.astype(dt), v_cache.astype(dt), (k_cache, v_cache)
    impl = resolve_attention(cfg.attention, cached=kv is not None, platform=cfg.target)
    blocks = attention_block_count(cfg, q.shape[1])
    if impl == "custom" and kv is None and query_index is None:
        a = kernels.causal_attention(q, k, v, mask, blocks, cfg.target)
    else:
        a = attention(q, k, v, mask, impl, cfg.target)
    a = checkpoint_name(a, "attention_out")  # kept by remat="attention"
    x = x + _project("BTNH,NHD->BTD", a, w, "o_proj", cfg)
    h = rms_norm(x, w["post_attention_layernorm"], cfg.rms_norm_eps).astype(dt)
    if any(f"{name}_lora_a" in w for name in ("gate_proj", "up_proj", "down_proj")):
        gate = _project("BTD,DF->BTF", h, w, "gate_proj", cfg)
        up = _project("BTD,DF->BTF", h, w, "up_proj", cfg)
        x = x + _project("BTF,FD->BTD", jax.nn.silu(gate) * up, w, "down_proj", cfg)
    else:
        x = x + kernels.gated_mlp(h, w["gate_proj"], w["up_proj"], w["down_proj"], cfg.target)
    return x, kv


def _rows(a: Array, index: Array) -> Array:
    """`a[b, index[b, r]]` for every b, r: [B,T,...] and [B,R] -> [B,R,...]."""
    index = index.reshape(index.shape + (1,) * (a.ndim - 2))
    return jnp.take_along_axis(a, index, axis=1)


_REMAT_POLICIES = {
    "none": None,  # no jax.checkpoint at all
    "full": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "attention": jax.checkpoint_policies.save_only_these_names("attention_out"),
}


def _constrain_batch(x: Array) -> Array:
    """Shard activations' batch axis over (data, fsdp) when a mesh with those axes is in context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp"} <= set(mesh.axis_names):
        return x
    spec = jax.sharding.PartitionSpec(("data", "fsdp"), *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, spec)


def embed_lookup(table: Array, tokens: Array) -> Array:
    """`table[tokens]` ([V,D], [B,T] -> [B,T,D]) with its sharding spelled out on a mesh with an
    `fsdp` axis: every device looks up every token (ids are a few bytes) in its `fsdp` slice of the
    model dimension (the vocabulary gathered, as FSDP gathers any weight before use), and the rows
    are then moved to the devices of their batch shard (`data` sliced, an all-to-all over `fsdp`).
    Left to itself, the partitioner meets a table sharded on the model dimension and a batch
    sharded over the same axis with a full rematerialisation of the lookup on every device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp"} <= set(mesh.axis_names):
        return jnp.take(table, tokens, axis=0)
    P = jax.sharding.PartitionSpec
    fsdp = "fsdp" if table.shape[1] % mesh.shape["fsdp"] == 0 else None
    table = jax.lax.with_sharding_constraint(table, P(None, fsdp))
    tokens = jax.lax.with_sharding_constraint(tokens, P())
    x = jnp.take(table, tokens, axis=0)
    data = "data" if tokens.shape[0] % mesh.shape["data"] == 0 else None
    return jax.lax.with_sharding_constraint(x, P(data, None, fsdp))


def init_cache(cfg: LlamaConfig, batch_size: int, max_len: int, dtype: str | None = None) -> Cache:
    """An empty KV cache for `batch_size` sequences of up to `max_len` tokens."""
    shape = (cfg.n_layers, batch_size, max_len, cfg.n_kv_heads, cfg.head_dim)
    dt = jnp.dtype(dtype or cfg.dtype)
    return {
        "k": jnp.zeros(shape, dt),
        "v": jnp.zeros(shape, dt),
        "mask": jnp.zeros((batch_size, max_len), jnp.bool_),
        "end_index": jnp.zeros((), jnp.int32),
    }


def _segment_positions(segment_ids: Array) -> Array:
    """Position of each token within its segment. [B,T] -> [B,T] int32."""
    t = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)[None, :]
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], jnp.bool_), segment_ids[:, 1:] != segment_ids[:, :-1]],
        axis=1,
    )
    start_index = jax.lax.cummax(jnp.where(starts, t, 0), axis=1)
    return t - start_index


class Transformer(nnx.Module):
    """Embedding, decoder layers and final norm (HF's `LlamaModel`, the `model.` prefix)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.embed_tokens = _param(rngs, (cfg.vocab_size, cfg.dim), ("vocab", "embed"), cfg)
        self.layers = Layers(cfg, rngs)
        self.norm = _param(rngs, (cfg.dim,), ("norm",), cfg, init="ones")

    def __call__(
        self,
        tokens: Array,
        *,
        positions: Array | None = None,
        attention_mask: Array | None = None,
        segment_ids: Array | None = None,
        cache: Cache | None = None,
        read_index: Array | None = None,
    ) -> tuple[Array, Cache | None]:
        """Hidden states after the final norm.

        Args:
          tokens: [B,T] int token ids.
          positions: [B,T] rotary positions. Default: the count of real tokens before each token
            (so left padding works), per segment when `segment_ids` are given.
          attention_mask: [B,T] 1 for real tokens, 0 for padding (left or right). Default all 1.
          segment_ids: [B,T] ids of packed sequences; a token attends only within its segment.
          cache: a KV cache from `init_cache`; the tokens are written at `cache["end_index"]`.
          read_index: [B,R] int positions whose hidden states are all that is wanted (no cache):
            the last layer then computes only their queries, output projection and MLP (with
            `scan_layers` the stack is not split and the rows are gathered after it).
        Returns:
          hidden [B,T,D] float32 (with `read_index`: [B,R,D]) and the updated cache (None without
          a cache).
        """
        cfg = self.config
        b, t = tokens.shape
        if read_index is not None and cache is not None:
            raise ValueError("read_index cannot be combined with a KV cache")
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.bool_)
        attention_mask = attention_mask.astype(jnp.bool_)
        q_idx = jnp.arange(t, dtype=jnp.int32)
        if cache is None:
            key_mask = attention_mask
            k_idx = q_idx
            end_index = None
        else:
            if segment_ids is not None:
                raise ValueError(
                    "segment_ids (packed sequences) cannot be combined with a KV cache"
                )
            end_index = cache["end_index"]
            key_mask = jax.lax.dynamic_update_slice(cache["mask"], attention_mask, (0, end_index))
            q_idx = q_idx + end_index
            k_idx = jnp.arange(key_mask.shape[1], dtype=jnp.int32)
        if positions is None:
            if segment_ids is not None:
                positions = _segment_positions(segment_ids)
            else:
                before = jnp.cumsum(key_mask.astype(jnp.int32), axis=1) - 1
                positions = jnp.maximum(jnp.take(before, q_idx, axis=1), 0)
        # [B,T,S]: causal by slot index, real keys only, same segment; a token always sees itself
        # so that padded query rows stay finite.
        causal = k_idx[None, :] <= q_idx[:, None]
        mask = causal[None] & key_mask[:, None, :]
        if segment_ids is not None:
            mask &= segment_ids[:, :, None] == segment_ids[:, None, :]
        mask |= k_idx[None, None, :] == q_idx[None, :, None]
        # one buffer, not recomputed in every layer's fusions (CPU)
        mask = kernels.materialized(mask, cfg.target)

        rope = kernels.rope_tables(positions, rope_frequencies(cfg))
        dt = jnp.dtype(cfg.dtype)
        x = _constrain_batch(embed_lookup(self.embed_tokens[...].astype(dt), tokens))
        weights = {
            name: var[...] for name, var in vars(self.layers).items() if isinstance(var, nnx.Param)
        }

        def layer(x, w, kv, query_index=None):
            x, kv = decoder_layer(w, x, positions, mask, kv, end_index, rope, cfg, query_index)
            return _constrain_batch(x), kv

        if cfg.remat != "none":
            layer = jax.checkpoint(layer, policy=_REMAT_POLICIES[cfg.remat])

        kv_all = None if cache is None else (cache["k"], cache["v"])
        if cfg.scan_layers:

            def body(x, xs):
                w, kv = xs
                x, kv = layer(x, w, kv)
                return x, kv

            x, kv_all = jax.lax.scan(body, x, (weights, kv_all))
            if read_index is not None:
                x = _rows(x, read_index)
        else:
            new_k, new_v = [], []
            for i in range(cfg.n_layers):
                w = {name: a[i] for name, a in weights.items()}
                kv = None if kv_all is None else (kv_all[0][i], kv_all[1][i])
                last = read_index if i == cfg.n_layers - 1 else None
                x, kv = layer(x, w, kv, last)
                if kv is not None:
                    new_k.append(kv[0])
                    new_v.append(kv[1])
            if kv_all is not None:
                kv_all = (jnp.stack(new_k), jnp.stack(new_v))
        hidden = rms_norm(x, self.norm[...], cfg.rms_norm_eps)
        if cache is None:
            return hidden, None
        new_cache = {"k": kv_all[0], "v": kv_all[1], "mask": key_mask, "end_index": end_index + t}
        return hidden, new_cache


class Llama(nnx.Module):
    """Llama causal LM (HF `LlamaForCausalLM`): `model(tokens, ...) -> (logits, cache)`."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.model = Transformer(cfg, rngs=rngs)
        if not cfg.tie_embeddings:
            self.lm_head = _param(rngs, (cfg.dim, cfg.vocab_size), ("embed", "vocab"), cfg)
        if cfg.lora_rank:  # last: the base weights are those of the same seed without LoRA
            self.model.layers.add_lora(cfg, rngs.params())

    def __call__(self, tokens: Array, **kwargs: Any) -> tuple[Array, Cache | None]:
        """Logits [B,T,V] float32 and the updated cache; arguments as `Transformer.__call__`."""
        hidden, cache = self.model(tokens, **kwargs)
        return self.logits(hidden), cache

    def logits(self, hidden: Array) -> Array:
        """Output projection in the compute dtype, accumulated in float32. [B,T,D] -> [B,T,V]."""
        dt = jnp.dtype(self.config.dtype)
        if self.config.tie_embeddings:
            w, eq = self.model.embed_tokens[...], "BTD,VD->BTV"
        else:
            w, eq = self.lm_head[...], "BTD,DV->BTV"
        return kernels.project(eq, hidden.astype(dt), w.astype(dt), jnp.float32, self.config.target)

    def target_logprobs(self, tokens: Array, loss_mask: Array, **kwargs: Any) -> Array:
        """log p(tokens[t] | tokens[:t]) where `loss_mask[t]`, else 0: [B,T] float32 (position 0
        is never a target). Equals `kernels.token_logprobs` of the logits masked by `loss_mask`;
        with `config.head_chunk` > 0 computed by `kernels.head_logprobs` (chunked, target
        positions only). `kwargs` as `Transformer.__call__` (positions, masks; no cache)."""
        hidden, _ = self.model(tokens, **kwargs)
        mask = loss_mask.astype(jnp.bool_).at[:, 0].set(False)
        if not self.config.head_chunk:
            return jnp.where(mask, kernels.token_logprobs(self.logits(hidden), tokens), 0.0)
        keep = self.config.keeps_head_probs(*tokens.shape)
        logp = kernels.head_logprobs(*self._head_inputs(hidden, tokens, mask), keep_probs=keep)
        return jnp.pad(logp[:, :-1], ((0, 0), (1, 0)))  # position t-1's prediction is token t's

    def target_logprob_sum(self, tokens: Array, loss_mask: Array, **kwargs: Any) -> Array:
        """`sum(target_logprobs(...))`, a float32 scalar; with `config.head_chunk` > 0 through
        `kernels.head_logprob_sum`, whose forward pass already computes the gradients (no logits
        recomputed: the SFT loss is linear in the log-probs)."""
        if not self.config.head_chunk:
            return jnp.sum(self.target_logprobs(tokens, loss_mask, **kwargs))
        hidden, _ = self.model(tokens, **kwargs)
        mask = loss_mask.astype(jnp.bool_).at[:, 0].set(False)
        return kernels.head_logprob_sum(*self._head_inputs(hidden, tokens, mask))

    def _head_inputs(self, hidden: Array, tokens: Array, mask: Array) -> tuple:
        """`kernels.head_logprobs`' arguments: position t predicts token t + 1, scored where
        that token is a target."""
        targets = jnp.roll(tokens, -1, axis=-1)
        predicts = jnp.roll(mask, -1, axis=-1).at[:, -1].set(False)
        tied = self.config.tie_embeddings
        w = self.model.embed_tokens[...] if tied else self.lm_head[...]
        hidden = hidden.astype(jnp.dtype(self.config.dtype))
        return hidden, w, targets, predicts, self.config.head_chunk, tied

    def init_cache(self, batch_size: int, max_len: int, dtype: str | None = None) -> Cache:
        return init_cache(self.config, batch_size, max_len, dtype)


class RewardStat(nnx.Variable):
    """Reward normalisation statistics: saved with the model, never trained."""


def last_token_index(attention_mask: Array) -> Array:
    """Index of the last real token of each row (left or right padding). [B,T] -> [B] int32."""
    t = jnp.arange(attention_mask.shape[1], dtype=jnp.int32)
    return jnp.max(jnp.where(attention_mask.astype(jnp.bool_), t[None, :], 0), axis=1)


class RewardModel(nnx.Module):
    """Llama backbone with a linear head read at the last real token (HF
    `LlamaForSequenceClassification`, no bias). `model(tokens, attention_mask=...) -> [B, num_labels]`.

    `reward_mean` / `reward_std` hold normalisation statistics (OpenRLHF's convention): rewards are
    returned raw; `normalize` applies them.
    """

    def __init__(self, cfg: LlamaConfig, *, num_labels: int = 1, rngs: nnx.Rngs):
        self.config = cfg
        self.num_labels = num_labels
        self.model = Transformer(cfg, rngs=rngs)
        self.score = _param(rngs, (cfg.dim, num_labels), ("embed", None), cfg)
        self.reward_mean = RewardStat(jnp.zeros((), jnp.float32))
        self.reward_std = RewardStat(jnp.ones((), jnp.float32))
        if cfg.lora_rank:
            self.model.layers.add_lora(cfg, rngs.params())

    def __call__(
        self,
        tokens: Array,
        *,
        attention_mask: Array | None = None,
        num_segments: int = 0,
        **kwargs: Any,
    ) -> Array:
        """Scores [B, num_labels] float32 at each row's last real token; with `num_segments` S > 0
        (packed rows: `segment_ids` 1..S required) [B, S, num_labels] at each segment's last
        token (a segment absent from the row reads position 0: mask it by the batch's slots)."""
        if attention_mask is None:
            attention_mask = jnp.ones(tokens.shape, jnp.bool_)
        if num_segments:
            seg = kwargs["segment_ids"]
            slots = jnp.arange(1, num_segments + 1, dtype=seg.dtype)
            t = jnp.arange(seg.shape[1], dtype=jnp.int32)
            here = seg[:, None, :] == slots[None, :, None]  # [B,S,T]
            read = jnp.max(jnp.where(here, t[None, None, :], 0), axis=-1)  # [B,S]
        else:
            read = last_token_index(attention_mask)[:, None]  # [B,1]
        # Only the read positions' hidden states: the last layer skips the others' queries, output
        # projection and MLP (`Transformer.__call__`'s read_index).
        h, _ = self.model(tokens, attention_mask=attention_mask, read_index=read, **kwargs)
        w = self.score[...].astype(jnp.float32)
        scores = jnp.einsum("BSD,DO->BSO", h, w)  # [B,S,O]
        return scores if num_segments else scores[:, 0]

    def normalize(self, rewards: Array) -> Array:
        return (rewards - self.reward_mean[...]) / self.reward_std[...]
