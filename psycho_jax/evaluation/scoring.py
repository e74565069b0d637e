"""Prompts to answer and a reward model to score the answers: what evaluation and online DPO share.

    prompts = load_prompts("sample:eval_prompts", limit=100)
    scorer = RewardScorer(load_model("/tmp/pipeline/reward"), tokenizer)
    scores = scorer.score([p.messages for p in prompts], replies)      # .reward [n], .principles

Prompt rows may carry the client's message as `prompt` or `question` (PsychoCounsel), a chat as
`messages` (ending with the user's turn), or be MT-bench questions (`question_id`, `turns`: the
user's messages, asked one after another, `category`); `id`, `topic` and a `reference` reply are
kept when present. A row without a usable prompt raises a `DataError` naming the file, row and field.
A prompt is a crisis prompt (`Prompt.crisis`) when a `crisis` column says so, else when
`safety.crisis_rules` finds a crisis in the user's turns or its topic/category.

Scoring renders prompt + reply with the chat template exactly as training pairs are rendered (the reward
model sees what it was trained on), reads the score at the last real token, and cuts a reply's end
when prompt + reply exceed `max_len` (as training did), counting the cuts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from psycho_jax.core import sharding
from psycho_jax.core.model import RewardModel
from psycho_jax.data import sources
from psycho_jax.data.formats import DataError, Message
from psycho_jax.data.templating import ChatTokenizer
from psycho_jax.evaluation import safety


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A conversation to reply to (ending with the user's turn) and what came with it."""

    id: str
    messages: tuple[Message, ...]
    topic: str = ""
    reference: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    followups: tuple[str, ...] = ()  # later user turns (MT-bench), each asked after a reply

    @property
    def num_turns(self) -> int:
        return 1 + len(self.followups)

    def context(self, replies: Sequence[str]) -> tuple[Message, ...]:
        """The conversation before the last reply of `replies` (one reply per user turn)."""
        msgs = list(self.messages)
        for reply, user in zip(replies[:-1], self.followups, strict=False):
            msgs += [Message("assistant", reply), Message("user", user)]
        return tuple(msgs)

    @property
    def crisis(self) -> bool:
        """A true `crisis` column decides; else `safety.crisis_rules` on the user's turns and the
        topic/category (the chat's check too)."""
        flag = self.extra.get("crisis")
        if isinstance(flag, str):
            flag = flag.strip().lower() in ("1", "true", "yes")
        if flag is not None and flag != "":
            return bool(flag)
        labels = f"{self.topic} {self.extra.get('category', '')}"
        users = [m.content for m in self.messages if m.role == "user"] + list(self.followups)
        return bool(safety.crisis_rules(" \n".join(users), labels))


def _prompt_from_row(row: dict[str, Any], file: str, i: int) -> Prompt:
    messages: tuple[Message, ...]
    followups: tuple[str, ...] = ()
    if "turns" in row and "messages" not in row:  # MT-bench question
        turns = row["turns"]
        if (
            not isinstance(turns, list)
            or not turns
            or not all(isinstance(t, str) and t.strip() for t in turns)
        ):
            raise DataError(file, i, "turns", "must be a non-empty list of non-empty strings")
        messages, followups = (Message("user", turns[0]),), tuple(turns[1:])
        row = {"id": row.get("question_id", row.get("id", f"{file}:{i}")), **row}
    elif "messages" in row:
        raw = row["messages"]
        if not isinstance(raw, list) or not raw:
            raise DataError(file, i, "messages", "must be a non-empty list of {role, content}")
        try:
            messages = tuple(Message(m["role"], m["content"]) for m in raw)
        except (KeyError, TypeError):
            raise DataError(file, i, "messages", "every turn needs 'role' and 'content'") from None
        if messages[-1].role == "assistant":  # an SFT row: reply to everything before the answer
            messages = messages[:-1]
        if not messages or messages[-1].role != "user":
            raise DataError(file, i, "messages", "must end with a user turn")
    else:
        field = "prompt" if "prompt" in row else "question"
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise DataError(file, i, field, "missing or empty (need prompt, question or messages)")
        messages = (Message("user", text),)
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise DataError(file, i, "reference", f"must be a string, got {type(reference).__name__}")
    known = {"id", "ID", "messages", "prompt", "question", "topic", "reference", "turns"}
    return Prompt(
        id=str(row.get("id", row.get("ID", f"{file}:{i}"))),
        messages=messages,
        topic=str(row.get("topic", "")),
        reference=reference,
        extra={k: v for k, v in row.items() if k not in known},
        followups=followups,
    )


def load_prompts(spec: str, limit: int = 0) -> list[Prompt]:
    """Prompts of a source spec (`sample:<name>`, a local JSONL/Parquet/CSV file, `hf:<name>[:split]`),
    the first `limit` of them (0: all). Duplicate ids raise."""
    name, rows = sources.read_rows(sources.parse_source(spec))
    if not rows:
        raise DataError(name, None, None, "no rows")
    rows = rows[:limit] if limit else rows
    prompts = [_prompt_from_row(r, name, i) for i, r in enumerate(rows)]
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        if p.id in seen:
            raise DataError(name, i, "id", f"{p.id!r} repeats row {seen[p.id]}")
        seen[p.id] = i
    return prompts


@dataclasses.dataclass(frozen=True)
class Scores:
    """Reward-model scores of n replies: `reward` [n] (the scalar head; raw, or `(r - mean) / std`
    for a checkpoint with `normalize_reward: true` in config.json), `principles` [n,7] (the
    principle head's ratings mapped back to 1..5, or None), `truncated` replies cut to fit."""

    reward: np.ndarray
    principles: np.ndarray | None
    truncated: int
    cut: np.ndarray | None = None  # [n] bool: which replies were cut to fit max_len


class RewardScorer:
    """Scores (prompt, reply) pairs with a Bradley-Terry reward model, `batch_size` at a time."""

    def __init__(
        self,
        model: RewardModel,
        tokenizer,
        *,
        mesh: jax.sharding.Mesh | None = None,
        max_len: int = 1024,
        batch_size: int = 16,
        bucket: int = 64,
    ):
        if not isinstance(model, RewardModel):
            raise TypeError(f"RewardScorer needs a RewardModel, got {type(model).__name__}")
        self.num_labels = model.num_labels
        # A checkpoint served normalised (`normalize_reward: true`, OpenRLHF) is scored so too.
        self.normalize = bool(getattr(model, "normalize_reward", False))
        self.stats = (float(model.reward_mean[...]), float(model.reward_std[...]))
        self.graphdef, self.state = nnx.split(model)
        self.chat = ChatTokenizer(tokenizer)
        self.mesh = mesh or sharding.make_mesh((1, 1, 1), devices=jax.local_devices()[:1])
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.batch_size = -(-batch_size // shards) * shards
        self.max_len, self.bucket = max_len, bucket
        self._fn = jax.jit(functools.partial(_score, self.graphdef))

    def encode(self, messages: Sequence[Message], reply: str) -> tuple[list[int], bool]:
        """Token ids of prompt + reply (the training pairs' rendering) and whether the reply was cut."""
        msgs = [m.as_dict() for m in messages]
        prompt = self.chat.encode(self.chat.render(msgs, add_generation_prompt=True))
        full = self.chat.encode(self.chat.render([*msgs, {"role": "assistant", "content": reply}]))
        if len(full) <= self.max_len:
            return full, False
        if len(prompt) >= self.max_len:
            raise ValueError(
                f"a prompt of {len(prompt)} tokens leaves no room for the reply in max_len "
                f"{self.max_len}: {msgs[-1]['content'][:60]!r}..."
            )
        return full[: self.max_len], True

    def score(self, prompts: Sequence[Sequence[Message]], replies: Sequence[str]) -> Scores:
        if len(prompts) != len(replies):
            raise ValueError(f"{len(prompts)} prompts but {len(replies)} replies")
        encoded = [self.encode(p, r) for p, r in zip(prompts, replies, strict=True)]
        rewards, principles = [], []
        for start in range(0, len(encoded), self.batch_size):
            chunk = [ids for ids, _ in encoded[start : start + self.batch_size]]
            t = max(len(ids) for ids in chunk)
            t = -(-t // self.bucket) * self.bucket
            tokens = np.full((self.batch_size, t), self.chat.pad_id or 0, np.int32)
            mask = np.zeros((self.batch_size, t), bool)
            for j, ids in enumerate(chunk):
                tokens[j, : len(ids)], mask[j, : len(ids)] = ids, True
            mask[len(chunk) :, 0] = True  # empty rows: one token, so every row has a last token
            with jax.set_mesh(self.mesh):
                out = self._fn(self.state, _put(tokens, self.mesh), _put(mask, self.mesh))
            if not out.is_fully_addressable:
                out = multihost_utils.process_allgather(out, tiled=True)
            out = np.asarray(out, np.float64)[: len(chunk)]
            rewards.append(out[:, 0])
            principles.append(out[:, 1:])
        reward = np.concatenate(rewards) if rewards else np.zeros(0)
        if self.normalize:
            reward = (reward - self.stats[0]) / self.stats[1]
        head = None
        if self.num_labels > 1 and rewards:
            head = np.concatenate(principles) * 2.0 + 3.0  # trained on (rating - 3) / 2
        cut = np.asarray([c for _, c in encoded], np.bool_)
        return Scores(reward, head, int(cut.sum()), cut)


def _put(x: np.ndarray, mesh) -> jax.Array:
    s = sharding.batch_sharding(mesh, x.ndim)
    return jax.make_array_from_callback(x.shape, s, lambda index: x[index])


def _score(graphdef, state, tokens, mask):
    model = nnx.merge(graphdef, state)
    return model(tokens, attention_mask=mask).astype(jnp.float32)
