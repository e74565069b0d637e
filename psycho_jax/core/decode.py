"""Batched generation with the KV cache: prefill, then a jitted decode loop.

    sampler = Sampler(model, tokenizer)
    replies = sampler.reply([[Message("user", "I can't sleep since the move.")]], Sampling(0.7, top_p=0.9))

`Sampler.generate` is the array-level entry point: left-padded prompts [B,T] and their mask in, new
tokens [B,N] out. The whole loop (`lax.while_loop`, leaving early once every row has hit a stop token)
is one compiled program per (batch, prompt bucket, N, sampling mode); temperature and top-p are traced,
so changing them does not recompile. Rows that stop are fed as padding (mask 0), so their cache slots
never become keys of the other rows and nothing after the stop token leaks into a reply.

`Sampler.stream` runs the same prefill and decode step from Python, one token at a time, for the chat.

Sampling follows Hugging Face's warpers in their order: temperature, then top-k, then top-p (the
smallest set of most likely tokens whose probability reaches `top_p`; the most likely token is always
kept). Temperature 0 is greedy.

Sharding: the prompts' batch axis is split over the mesh's (data, fsdp) axes and the cache follows the
activations; the weights keep their training shardings. A batch that does not divide over those axes
is padded with empty rows, dropped again on the way out.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from psycho_jax.core import sharding
from psycho_jax.core.model import Llama, init_cache
from psycho_jax.data.formats import Message
from psycho_jax.data.templating import ChatTokenizer

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How to pick each next token.

    Attributes:
      temperature: 0 for greedy decoding; otherwise logits are divided by it.
      top_k: keep only the k most likely tokens (0: off).
      top_p: nucleus sampling threshold in (0, 1] (1: off).
      max_new_tokens: N, the most tokens generated per prompt (the stop token included).
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature={self.temperature}: must be >= 0")
        if self.top_k < 0:
            raise ValueError(f"Sampling.top_k={self.top_k}: must be >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p={self.top_p}: must be in (0, 1]")
        if self.max_new_tokens <= 0:
            raise ValueError(f"Sampling.max_new_tokens={self.max_new_tokens}: must be positive")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclasses.dataclass(frozen=True)
class Generated:
    """New tokens of a batch, on the host.

    Attributes:
      tokens: [B,N] int32, `pad_id` after a row's stop token.
      lengths: [B] tokens generated, the stop token included.
      finished: [B] bool, True where the row ended with a stop token (else it hit N).
    """

    tokens: np.ndarray
    lengths: np.ndarray
    finished: np.ndarray


@dataclasses.dataclass(frozen=True)
class Reply:
    """One generated reply: its text (without the stop token), token count and whether it stopped."""

    text: str
    num_tokens: int
    finished: bool


# ----------------------------------------------------------------------------- sampling


def _top_p_keep(sorted_logits: Array, top_p: Array) -> Array:
    """Which of the descending-sorted logits [B,V'] the nucleus keeps: the probability mass *before*
    each token is under `top_p` (so the first token is always kept)."""
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    return before < top_p


def sample_token(
    logits: Array,
    rng: Array,
    temperature: Array,
    top_p: Array,
    *,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
) -> Array:
    """Next tokens from logits [B,V] float32 -> [B] int32 (see the module docstring for the order)."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k:  # sample among the k best; top-p then works on k sorted values, not the vocabulary
        values, index = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))
        if use_top_p:
            values = jnp.where(_top_p_keep(values, top_p), values, -jnp.inf)
        choice = jax.random.categorical(rng, values, axis=-1)
        return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    if use_top_p:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        keep = _top_p_keep(sorted_logits, top_p)
        threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits >= threshold, logits, -jnp.inf)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


# ----------------------------------------------------------------------------- the compiled parts


def _constrain_cache(cache: dict[str, Array]) -> dict[str, Array]:
    """Batch axis of the cache over (data, fsdp), kv heads over tensor, where they divide."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not {"data", "fsdp", "tensor"} <= set(mesh.axis_names):
        return cache
    b, k = cache["k"].shape[1], cache["k"].shape[3]
    batch = ("data", "fsdp") if b % (mesh.shape["data"] * mesh.shape["fsdp"]) == 0 else None
    heads = "tensor" if k % mesh.shape["tensor"] == 0 else None
    P = jax.sharding.PartitionSpec
    kv = P(None, batch, None, heads, None)
    specs = {"k": kv, "v": kv, "mask": P(batch, None), "end_index": P()}
    return {name: jax.lax.with_sharding_constraint(x, specs[name]) for name, x in cache.items()}


def _prefill(model: Llama, tokens: Array, mask: Array, cache_len: int, cache_dtype):
    """Runs the prompts [B,T] into a fresh cache of `cache_len` slots; -> (last logits [B,V], cache)."""
    cache = _constrain_cache(init_cache(model.config, tokens.shape[0], cache_len, cache_dtype))
    hidden, cache = model.model(tokens, attention_mask=mask, cache=cache)
    return model.logits(hidden[:, -1:])[:, 0], _constrain_cache(cache)


def _step(model: Llama, carry: dict, temperature, top_p, stop_ids, pad_id, **how):
    """One decode step: sample from `carry["logits"]`, record the token, run it through the model."""
    rng, sub = jax.random.split(carry["rng"])
    done = carry["done"]
    token = sample_token(carry["logits"], sub, temperature, top_p, **how)
    token = jnp.where(done, pad_id, token)
    out = jax.lax.dynamic_update_slice(carry["out"], token[:, None], (0, carry["step"]))
    stopped = done | jnp.isin(token, stop_ids)
    logits, cache = model(token[:, None], attention_mask=(~done)[:, None], cache=carry["cache"])
    return dict(
        carry,
        rng=rng,
        logits=logits[:, 0],
        cache=_constrain_cache(cache),
        out=out,
        done=stopped,
        lengths=carry["lengths"] + (~done).astype(jnp.int32),
        step=carry["step"] + 1,
    )


def _initial_carry(logits, cache, mask, rng, max_new_tokens, pad_id):
    b = logits.shape[0]
    return dict(
        rng=rng,
        logits=logits,
        cache=cache,
        out=jnp.full((b, max_new_tokens), pad_id, jnp.int32),
        done=~jnp.any(mask, axis=1),  # empty rows (batch padding) never generate
        lengths=jnp.zeros((b,), jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


def _generate(graphdef, state, tokens, mask, rng, temperature, top_p, stop_ids, pad_id, *,
              max_new_tokens, cache_dtype, how):  # fmt: skip
    model = nnx.merge(graphdef, state)
    logits, cache = _prefill(model, tokens, mask, tokens.shape[1] + max_new_tokens, cache_dtype)
    carry = _initial_carry(logits, cache, mask, rng, max_new_tokens, pad_id)
    carry = jax.lax.while_loop(
        lambda c: (c["step"] < max_new_tokens) & ~jnp.all(c["done"]),
        lambda c: _step(model, c, temperature, top_p, stop_ids, pad_id, **how),
        carry,
    )
    return carry["out"], carry["lengths"], carry["done"] & jnp.any(mask, axis=1)


# ----------------------------------------------------------------------------- the sampler


def _bucket(n: int, multiple: int) -> int:
    return max(multiple, math.ceil(n / multiple) * multiple)


class Sampler:
    """Generation for a `Llama` (any sharding): arrays with `generate`, chat text with `reply`,
    token by token with `stream`.

    Args:
      model: the causal LM; its weights are used where they are (sharded or not).
      tokenizer: a Hugging Face tokenizer with a chat template (needed by `reply` and `stream`).
      mesh: the mesh the weights live on; None: one device.
      stop_ids: tokens that end a reply; default the tokenizer's `<|eot_id|>` / eos ids.
      bucket: prompt lengths are left-padded up to a multiple of this, to bound recompilation.
      cache_dtype: KV cache dtype (default the model's compute dtype).
    """

    def __init__(
        self,
        model: Llama,
        tokenizer=None,
        *,
        mesh: jax.sharding.Mesh | None = None,
        stop_ids: Sequence[int] | None = None,
        bucket: int = 32,
        cache_dtype: str | None = None,
    ):
        if not isinstance(model, Llama):
            raise TypeError(f"Sampler needs a causal LM (Llama), got {type(model).__name__}")
        self.config = model.config
        self.graphdef, self.state = nnx.split(model)
        self.mesh = mesh or sharding.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
        self.tokenizer = tokenizer
        self.chat = ChatTokenizer(tokenizer) if tokenizer is not None else None
        if stop_ids is None:
            stop_ids = _default_stop_ids(tokenizer) if tokenizer is not None else ()
        self.stop_ids = tuple(int(t) for t in stop_ids)
        self.pad_id = (
            tokenizer.pad_token_id
            if tokenizer is not None and tokenizer.pad_token_id is not None
            else 0
        )
        self.bucket = bucket
        self.cache_dtype = cache_dtype
        self._compiled: dict = {}

    # -- arrays

    def _shards(self) -> int:
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

    def _put(self, x: np.ndarray) -> Array:
        """A host array (the same on every host) onto the mesh, batch axis split."""
        x = np.asarray(x)
        s = sharding.batch_sharding(self.mesh, x.ndim)
        return jax.make_array_from_callback(x.shape, s, lambda index: x[index])

    def _fetch(self, x: Array) -> np.ndarray:
        if not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    def _how(self, s: Sampling) -> dict:
        return dict(greedy=s.greedy, top_k=s.top_k, use_top_p=s.top_p < 1.0)

    def _traced(self, s: Sampling, seed: int | Array) -> tuple:
        rng = seed if isinstance(seed, jax.Array) else jax.random.key(seed)
        return (
            rng,
            jnp.float32(max(s.temperature, 1e-6)),
            jnp.float32(s.top_p),
            jnp.asarray(self.stop_ids or (-1,), jnp.int32),
            jnp.int32(self.pad_id),
        )

    def generate(
        self, tokens: np.ndarray, attention_mask: np.ndarray, sampling: Sampling, seed: int = 0
    ) -> Generated:
        """New tokens for left-padded prompts.

        Args:
          tokens: [B,T] int prompt ids, left-padded (right-aligned).
          attention_mask: [B,T] 1 for prompt tokens, 0 for padding.
          sampling: how to choose tokens; `sampling.max_new_tokens` is N.
          seed: the sampling seed (ignored when greedy).
        Returns:
          `Generated` with tokens [B,N], lengths [B] and finished [B].
        """
        tokens, mask = np.asarray(tokens, np.int32), np.asarray(attention_mask, bool)
        if tokens.ndim != 2 or tokens.shape != mask.shape:
            raise ValueError(f"tokens {tokens.shape} and attention_mask {mask.shape}: need [B,T]")
        if mask.any() and (np.diff(mask.astype(np.int8), axis=1) < 0).any():
            raise ValueError("prompts must be left-padded (attention_mask 0...0 1...1 per row)")
        b, t = tokens.shape
        t_pad = _bucket(t, self.bucket)
        b_pad = _bucket(b, self._shards())
        tokens = np.pad(tokens, ((0, b_pad - b), (t_pad - t, 0)), constant_values=self.pad_id)
        mask = np.pad(mask, ((0, b_pad - b), (t_pad - t, 0)))
        n = sampling.max_new_tokens
        key = ("generate", b_pad, t_pad, n, tuple(sorted(self._how(sampling).items())))
        if key not in self._compiled:
            self._compiled[key] = jax.jit(
                functools.partial(
                    _generate,
                    self.graphdef,
                    max_new_tokens=n,
                    cache_dtype=self.cache_dtype,
                    how=self._how(sampling),
                )
            )
        with jax.set_mesh(self.mesh):
            out, lengths, finished = self._compiled[key](
                self.state, self._put(tokens), self._put(mask), *self._traced(sampling, seed)
            )
        return Generated(self._fetch(out)[:b], self._fetch(lengths)[:b], self._fetch(finished)[:b])

    # -- text

    def _require_chat(self) -> ChatTokenizer:
        if self.chat is None:
            raise ValueError("this Sampler was made without a tokenizer: pass one for text")
        return self.chat

    def encode_prompt(self, messages: Sequence[Message | dict]) -> list[int]:
        """Chat-template ids of a conversation, ending with the assistant header."""
        chat = self._require_chat()
        dicts = [m.as_dict() if isinstance(m, Message) else dict(m) for m in messages]
        return chat.encode(chat.render(dicts, add_generation_prompt=True))

    def decode_reply(self, ids: Sequence[int]) -> str:
        """Text of generated ids, cut at the first stop token."""
        ids = list(ids)
        for i, t in enumerate(ids):
            if t in self.stop_ids:
                ids = ids[:i]
                break
        return self._require_chat().tokenizer.decode(ids, skip_special_tokens=True)

    def reply(
        self,
        conversations: Sequence[Sequence[Message | dict]],
        sampling: Sampling,
        *,
        batch_size: int = 16,
        seed: int = 0,
    ) -> list[Reply]:
        """The assistant's next reply to each conversation (in the input order).

        Prompts are sorted by length and generated `batch_size` at a time (a fixed batch shape, so a
        handful of programs are compiled); batch i samples with seed `fold_in(seed, i)`.
        """
        prompts = [self.encode_prompt(c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[Reply | None] = [None] * len(prompts)
        base = jax.random.key(seed)
        for n, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start : start + batch_size]
            t = max(len(prompts[i]) for i in rows)
            tokens = np.full((batch_size, t), self.pad_id, np.int32)
            mask = np.zeros((batch_size, t), bool)
            for j, i in enumerate(rows):
                tokens[j, t - len(prompts[i]) :] = prompts[i]
                mask[j, t - len(prompts[i]) :] = True
            out = self.generate(tokens, mask, sampling, seed=jax.random.fold_in(base, n))
            for j, i in enumerate(rows):
                ids = out.tokens[j, : out.lengths[j]].tolist()
                replies[i] = Reply(
                    self.decode_reply(ids), int(out.lengths[j]), bool(out.finished[j])
                )
        return replies

    # -- token by token

    def stream(self, prompt: Sequence[int], sampling: Sampling, seed: int = 0) -> Iterator[int]:
        """Yields the new tokens of one prompt as they are generated (the stop token is not yielded).

        The same prefill and decode step as `generate`, driven from Python one token at a time.
        """
        t = _bucket(len(prompt), self.bucket)
        tokens = np.full((1, t), self.pad_id, np.int32)
        tokens[0, t - len(prompt) :] = prompt
        mask = np.zeros((1, t), bool)
        mask[0, t - len(prompt) :] = True
        n = sampling.max_new_tokens
        how = self._how(sampling)
        pkey = ("prefill", t, n)
        if pkey not in self._compiled:

            def prefill(state, tokens, mask):
                model = nnx.merge(self.graphdef, state)
                return _prefill(model, tokens, mask, t + n, self.cache_dtype)

            self._compiled[pkey] = jax.jit(prefill)
        skey = ("step", tuple(sorted(how.items())))
        if skey not in self._compiled:

            def step(state, carry, temperature, top_p, stop_ids, pad_id):
                model = nnx.merge(self.graphdef, state)
                return _step(model, carry, temperature, top_p, stop_ids, pad_id, **how)

            self._compiled[skey] = jax.jit(step, donate_argnums=1)
        rng, temperature, top_p, stop_ids, pad_id = self._traced(sampling, seed)
        with jax.set_mesh(self.mesh):
            mask_d = jnp.asarray(mask)
            logits, cache = self._compiled[pkey](self.state, jnp.asarray(tokens), mask_d)
            carry = _initial_carry(logits, cache, mask_d, rng, n, pad_id)
            for i in range(n):
                carry = self._compiled[skey](
                    self.state, carry, temperature, top_p, stop_ids, pad_id
                )
                token = int(carry["out"][0, i])
                if bool(carry["done"][0]):
                    return
                yield token


def _default_stop_ids(tokenizer) -> tuple[int, ...]:
    """`<|eot_id|>` (Llama 3 chat) and the tokenizer's eos, where they exist."""
    ids = set()
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot is not None:
        ids.add(eot)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return tuple(sorted(ids))
