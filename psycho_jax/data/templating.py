"""Chat templating and loss masks: examples -> token ids, with truncation by policy.

The tokenizer's own chat template (`apply_chat_template`) renders every text; nothing here knows a
template's format. What is checked, for every row (a `DataError` naming file, row and field if not):

- exactly one BOS: the template writes it (Llama 3) and the text is encoded without adding special
  tokens, or, for a template that writes none while the tokenizer adds one, it is added once here;
- no message contains special-token text (it would be encoded as a control token);
- SFT: for each assistant turn, `render(turns before, add_generation_prompt=True)` and
  `render(turns up to it)` are text and token prefixes of the whole conversation; the tokens in
  between (the reply and its end-of-turn token, not the role header) are the loss mask;
- preference: the prompt is rendered once with `add_generation_prompt=True`; chosen and rejected are
  `prompt + reply` and their first tokens must be exactly the prompt's tokens. Loss is on the reply
  tokens only.

Truncation (`Truncation.policy`) when a sequence is longer than `max_len` tokens:
- `"keep_last_turns"` (default): drop the oldest user/assistant exchanges of the context (a system
  message stays), then cut the end of the replies; a row is skipped, and counted, if the last
  user turn alone leaves fewer than `min_reply_tokens` for a reply;
- `"skip"`: skip the row (counted);
- `"error"`: raise a `DataError`.
Truncations and skips are counted in a `SkipCounter`. A reply is never cut to zero tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import regex
import transformers

from psycho_jax.data.encoder import TextEncoder
from psycho_jax.data.formats import (
    PRINCIPLES,
    Conversation,
    DataError,
    Example,
    Message,
    OnError,
    PreferencePair,
    SkipCounter,
    handle,
)

Policy = Literal["keep_last_turns", "skip", "error"]
POLICIES = ("keep_last_turns", "skip", "error")


@dataclasses.dataclass(frozen=True)
class Truncation:
    """How long sequences may be and what happens to longer ones (see module docstring)."""

    max_len: int
    policy: Policy = "keep_last_turns"
    min_reply_tokens: int = 1

    def __post_init__(self):
        if self.max_len <= 0:
            raise ValueError(f"Truncation.max_len must be positive, got {self.max_len}")
        if self.policy not in POLICIES:
            raise ValueError(f"Truncation.policy must be one of {POLICIES}, got {self.policy!r}")
        if not 1 <= self.min_reply_tokens < self.max_len:
            raise ValueError(
                f"Truncation.min_reply_tokens must be in [1, max_len), got {self.min_reply_tokens}"
            )


@dataclasses.dataclass(frozen=True)
class TokenizedConversation:
    """`tokens` [L] int32 and `loss_mask` [L] bool (True on assistant tokens); `index` into the
    examples it came from."""

    tokens: np.ndarray
    loss_mask: np.ndarray
    index: int


@dataclasses.dataclass(frozen=True)
class TokenizedPair:
    """Shared `prompt` [P] and the reply tokens `chosen` [C], `rejected` [R] (int32) that follow it;
    `ratings` [2, 7] float32 (chosen, rejected) or None; `margin` or None; `index` into the
    examples it came from."""

    prompt: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    ratings: np.ndarray | None
    margin: float | None
    index: int


Tokenized = TokenizedConversation | TokenizedPair


class ChatTokenizer:
    """A Hugging Face tokenizer's chat template and an exact, cached encoder (`TextEncoder`).

    Raises:
        ValueError: the tokenizer has no chat template, or the template adds its own system prompt on
            top of the conversation's one (it would appear twice).
    """

    def __init__(self, tokenizer: transformers.PreTrainedTokenizerBase, fast: bool = True):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat_template; set one (e.g. Llama 3.1's)")
        self.tokenizer = tokenizer
        self.encoder = TextEncoder(tokenizer, fast=fast)
        self.bos_id = tokenizer.bos_token_id
        self.pad_id = tokenizer.pad_token_id
        specials = sorted(
            {t.content for t in tokenizer.backend_tokenizer.get_added_tokens_decoder().values()},
            key=len,
            reverse=True,
        )
        self._special_re = (
            regex.compile("|".join(map(regex.escape, specials))) if specials else None
        )
        probe = [{"role": "system", "content": "SYSPROBE"}, {"role": "user", "content": "UPROBE"}]
        text = self.render(probe, add_generation_prompt=True)
        if text.count("system") > 1 or text.count("SYSPROBE") != 1:
            raise ValueError(
                "the chat template renders a conversation's system message next to a default system "
                f"prompt of its own (system appears twice): {text!r}"
            )
        ids = self.encoder.encode(text)
        adds_bos = (
            tokenizer("x")["input_ids"][:1] == [self.bos_id] if self.bos_id is not None else False
        )
        self.prepend_bos = bool(adds_bos and self.bos_id not in ids)

    def render(
        self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False
    ) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        ids = self.encoder.encode(text)
        return [self.bos_id, *ids] if self.prepend_bos else ids

    def special_in(self, text: str) -> str | None:
        """The first special-token string found in `text`, if any."""
        m = self._special_re.search(text) if self._special_re else None
        return m.group(0) if m else None

    def check_bos(self, ids: Sequence[int], ex: Example, field: str) -> None:
        if self.bos_id is None:
            return
        n = sum(1 for t in ids if t == self.bos_id)
        if n > 1 or (n == 1 and ids[0] != self.bos_id):
            raise DataError(ex.file, ex.row, field, f"{n} BOS tokens (expected one, first)")


def _dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [m.as_dict() for m in messages]


def _render(
    ct: ChatTokenizer, ex: Example, field: str, msgs: list[dict[str, str]], gen: bool = False
) -> str:
    try:
        return ct.render(msgs, add_generation_prompt=gen)
    except Exception as e:  # jinja2 errors, raise_exception() in a template
        raise DataError(ex.file, ex.row, field, f"the chat template failed: {e}") from e


def _check_specials(ct: ChatTokenizer, ex: Example) -> None:
    fields = (
        [(f"messages[{k}].content", m.content) for k, m in enumerate(ex.messages)]
        if isinstance(ex, Conversation)
        else [(f"prompt[{k}].content", m.content) for k, m in enumerate(ex.prompt)]
        + [("chosen", ex.chosen), ("rejected", ex.rejected)]
    )
    for field, text in fields:
        tok = ct.special_in(text)
        if tok is not None:
            raise DataError(
                ex.file,
                ex.row,
                field,
                f"contains the special token {tok!r}; clean it out of the text",
            )


def _drop_oldest_exchange(messages: tuple[Message, ...]) -> tuple[Message, ...] | None:
    """Removes the first user/assistant exchange after an optional system message (None if that
    would leave no user turn before the last one)."""
    head = messages[:1] if messages[0].role == "system" else ()
    turns = messages[len(head) :]
    if len(turns) < 3:  # u,a,u,... : at least one exchange must stay in front of the last turn(s)
        return None
    return head + turns[2:]


def _too_long(ex: Example, trunc: Truncation, n: int, field: str, skips: SkipCounter) -> None:
    """Applies the "error" (raise) or "skip" (count) policy to a row of `n` tokens."""
    if trunc.policy == "error":
        raise DataError(ex.file, ex.row, field, f"{n} tokens, longer than max_len {trunc.max_len}")
    skips.skip(f"longer than max_len {trunc.max_len} (policy 'skip')", f"{ex.file}: row {ex.row}")


def tokenize_conversation(
    ct: ChatTokenizer, conv: Conversation, trunc: Truncation, skips: SkipCounter, index: int = 0
) -> TokenizedConversation | None:
    """Tokens and assistant-only loss mask of one conversation, or None if skipped (counted).

    Raises:
        DataError: template or tokenizer inconsistencies, a too-long row under policy "error".
    """
    _check_specials(ct, conv)
    messages = conv.messages
    dropped = 0
    while True:
        ids, mask = _conversation_ids(ct, conv, messages)
        if len(ids) <= trunc.max_len:
            break
        if trunc.policy != "keep_last_turns":
            _too_long(conv, trunc, len(ids), "messages", skips)
            return None
        shorter = _drop_oldest_exchange(messages)
        if shorter is None:
            break
        messages, dropped = shorter, dropped + 1
    if dropped:
        skips.count("conversation: dropped oldest turns to fit max_len")
    if len(ids) > trunc.max_len:
        ids, mask = ids[: trunc.max_len], mask[: trunc.max_len]
        if mask.sum() < trunc.min_reply_tokens:
            skips.skip(
                f"fewer than {trunc.min_reply_tokens} assistant tokens left within max_len "
                f"{trunc.max_len}",
                f"{conv.file}: row {conv.row}",
            )
            return None
        skips.count("conversation: cut the end to fit max_len")
    return TokenizedConversation(ids, mask, index)


def _conversation_ids(
    ct: ChatTokenizer, conv: Conversation, messages: tuple[Message, ...]
) -> tuple[np.ndarray, np.ndarray]:
    msgs = _dicts(messages)
    full = _render(ct, conv, "messages", msgs)
    ids = ct.encode(full)
    ct.check_bos(ids, conv, "messages")
    mask = np.zeros(len(ids), np.bool_)
    for j, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        field = f"messages[{j + len(conv.messages) - len(messages)}]"
        before = _render(ct, conv, field, msgs[:j], gen=True)
        upto = _render(ct, conv, field, msgs[: j + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            raise DataError(
                conv.file,
                conv.row,
                field,
                "the chat template does not render earlier turns as a prefix of later ones",
            )
        a, b = ct.encode(before), ct.encode(upto)
        if b[: len(a)] != a or ids[: len(b)] != b:
            raise DataError(
                conv.file,
                conv.row,
                field,
                "the tokens of the conversation before this reply are not a prefix of the tokens "
                "with it (the tokenizer merges across the boundary)",
            )
        mask[len(a) : len(b)] = True
    return np.asarray(ids, np.int32), mask


def _pair_ids(
    ct: ChatTokenizer, pair: PreferencePair, prompt: tuple[Message, ...]
) -> tuple[list[int], list[int], list[int]]:
    msgs = _dicts(prompt)
    prompt_text = _render(ct, pair, "prompt", msgs, gen=True)
    prompt_ids = ct.encode(prompt_text)
    ct.check_bos(prompt_ids, pair, "prompt")
    replies = []
    for field, reply in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        full = _render(ct, pair, field, [*msgs, {"role": "assistant", "content": reply}])
        if not full.startswith(prompt_text):
            raise DataError(
                pair.file,
                pair.row,
                field,
                "the chat template renders the prompt differently once the reply is added",
            )
        ids = ct.encode(full)
        if ids[: len(prompt_ids)] != prompt_ids:
            raise DataError(
                pair.file,
                pair.row,
                field,
                "the prompt's tokens are not a prefix of prompt+reply tokens (the tokenizer merges "
                f"across the boundary at token {len(prompt_ids)})",
            )
        if len(ids) == len(prompt_ids):
            raise DataError(pair.file, pair.row, field, "the reply encodes to zero tokens")
        replies.append(ids[len(prompt_ids) :])
    return prompt_ids, replies[0], replies[1]


def tokenize_pair(
    ct: ChatTokenizer, pair: PreferencePair, trunc: Truncation, skips: SkipCounter, index: int = 0
) -> TokenizedPair | None:
    """Shared prompt tokens and the two reply token lists, or None if skipped (counted).

    Raises:
        DataError: template or tokenizer inconsistencies, a too-long row under policy "error".
    """
    _check_specials(ct, pair)
    prompt = pair.prompt
    dropped = 0
    while True:
        p, c, r = _pair_ids(ct, pair, prompt)
        longest = len(p) + max(len(c), len(r))
        if longest <= trunc.max_len:
            break
        if trunc.policy != "keep_last_turns":
            _too_long(pair, trunc, longest, "chosen" if len(c) >= len(r) else "rejected", skips)
            return None
        shorter = _drop_oldest_exchange(prompt)
        if shorter is None:
            break
        prompt, dropped = shorter, dropped + 1
    if dropped:
        skips.count("pair: dropped oldest prompt turns to fit max_len")
    room = trunc.max_len - len(p)
    if room < trunc.min_reply_tokens:
        skips.skip(
            f"prompt of {len(p)} tokens leaves fewer than {trunc.min_reply_tokens} reply tokens "
            f"within max_len {trunc.max_len}",
            f"{pair.file}: row {pair.row}",
        )
        return None
    if len(c) > room or len(r) > room:
        skips.count("pair: cut the end of a reply to fit max_len")
        c, r = c[:room], r[:room]
    ratings = None
    if pair.chosen_ratings is not None and pair.rejected_ratings is not None:
        ratings = np.asarray([pair.chosen_ratings, pair.rejected_ratings], np.float32)
        assert ratings.shape == (2, len(PRINCIPLES))
    as_i32 = lambda x: np.asarray(x, np.int32)
    return TokenizedPair(as_i32(p), as_i32(c), as_i32(r), ratings, pair.margin, index)


def tokenize_examples(
    examples: Sequence[Example],
    ct: ChatTokenizer,
    trunc: Truncation,
    *,
    on_error: OnError = "raise",
    skips: SkipCounter | None = None,
) -> list[Tokenized]:
    """Tokenizes every example (all conversations or all pairs); skips are counted in `skips`.

    `index` of each result is the example's position in `examples`.
    """
    skips = SkipCounter() if skips is None else skips
    kinds = {type(e) for e in examples}
    if len(kinds) > 1:
        raise ValueError(f"examples mix {sorted(k.__name__ for k in kinds)}; tokenize them apart")
    out: list[Tokenized] = []
    for i, ex in enumerate(examples):
        try:
            if isinstance(ex, Conversation):
                t = tokenize_conversation(ct, ex, trunc, skips, i)
            else:
                t = tokenize_pair(ct, ex, trunc, skips, i)
        except DataError as e:
            handle(e, on_error, skips)
            continue
        if t is not None:
            out.append(t)
    return out
