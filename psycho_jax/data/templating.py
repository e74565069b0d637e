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

Long sessions are tokenised once: for a template that renders a conversation as a prefix (BOS and
the system message) followed by one piece per turn (Llama 3's does; checked on every row: the pieces
must join into exactly the whole rendering and its tokens), each turn is rendered and encoded on its
own and any run of turns is then a concatenation of pieces, so choosing turns costs nothing more
(a 600-message session: milliseconds). Other templates fall back to rendering each candidate.

Truncation (`Truncation.policy`) when a sequence is longer than `max_len` tokens:
- `"keep_last_turns"` (default): drop the oldest user/assistant exchanges of the context (a system
  message stays), then cut the end of the replies; a row is skipped, and counted, if the last
  user turn alone leaves fewer than `min_reply_tokens` for a reply;
- `"skip"`: skip the row (counted);
- `"error"`: raise a `DataError`.
With `Truncation.windows` a conversation longer than `max_len` becomes several overlapping windows
instead (`conversation_windows`): each starts at a turn (after the system message, which every
window keeps), ends at a turn boundary, and holds at most `max_len` tokens; the next window starts
with up to half a window of the previous one's last turns as context. Each assistant turn is a
target in exactly one window (the first that holds it); one turn longer than a window alone is cut.
Truncations and skips are counted in a `SkipCounter`, as is the share of assistant tokens kept as
targets (`SkipCounter.assistant_tokens`). A reply is never cut to zero tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import regex
import tqdm
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

DEFAULT_MAX_LEN = 320
"""The configs' `data.max_len` (and the audit's default `--max_len`)."""
Policy = Literal["keep_last_turns", "skip", "error"]
POLICIES = ("keep_last_turns", "skip", "error")


@dataclasses.dataclass(frozen=True)
class Truncation:
    """How long sequences may be and what happens to longer ones (see module docstring)."""

    max_len: int
    policy: Policy = "keep_last_turns"
    min_reply_tokens: int = 1
    windows: bool = False  # conversations: overlapping windows instead of keep_last_turns

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
    # Per-turn labels of the assistant targets: (start, end, label) token spans, or ().
    labels: tuple[tuple[int, int, str], ...] = ()


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


def _too_long(ex: Example, trunc: Truncation, n: int, field: str, skips: SkipCounter) -> None:
    """Applies the "error" (raise) or "skip" (count) policy to a row of `n` tokens."""
    if trunc.policy == "error":
        raise DataError(ex.file, ex.row, field, f"{n} tokens, longer than max_len {trunc.max_len}")
    skips.skip(f"longer than max_len {trunc.max_len} (policy 'skip')", f"{ex.file}: row {ex.row}")


@dataclasses.dataclass(frozen=True)
class Turns:
    """A conversation tokenised turn by turn: `head` (BOS, system message) [H] and for each turn
    after it its tokens and assistant target mask; any run of turns after `head` is valid input."""

    head: np.ndarray
    ids: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    roles: tuple[str, ...]
    labels: tuple[str | None, ...]

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(x) for x in self.ids], np.int64)

    def join(self, start: int, end: int, targets: Sequence[int] | None = None):
        """(tokens, loss mask, label spans) of `head` + turns[start:end]; targets only on turns
        `targets` (default: every assistant turn)."""
        ids = [self.head, *self.ids[start:end]]
        keep = set(range(start, end)) if targets is None else set(targets)
        masks = [np.zeros(len(self.head), np.bool_)]
        spans, at = [], len(self.head)
        for k in range(start, end):
            m = self.masks[k] if k in keep else np.zeros(len(self.ids[k]), np.bool_)
            masks.append(m)
            if self.labels[k] is not None and m.any():
                spans.append((at, at + len(m), self.labels[k]))
            at += len(m)
        return np.concatenate(ids).astype(np.int32), np.concatenate(masks), tuple(spans)


def _split_turns(ct: ChatTokenizer, conv: Conversation) -> Turns | None:
    """`Turns` of a conversation, or None when the template is not a prefix plus one piece per
    turn (or its tokens merge across turns): the caller then renders each candidate."""
    msgs = _dicts(conv.messages)
    n_head = 1 if msgs[0]["role"] == "system" else 0
    head, turns = msgs[:n_head], msgs[n_head:]
    u, a = {"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}
    try:
        probe = ct.render([*head, u])
        gen = ct.render([*head, u], add_generation_prompt=True)
        two, three = ct.render([*head, u, a]), ct.render([*head, u, a, u])
        texts = [ct.render([*head, m]) for m in turns]
    except Exception:  # a template that rejects a conversation opening with the assistant
        return None
    user_piece = three[len(two) :]  # how a user turn renders after others
    if not (three.startswith(two) and probe.endswith(user_piece) and gen.startswith(probe)):
        return None
    prefix = probe[: len(probe) - len(user_piece)]  # BOS and the system message
    if not all(t.startswith(prefix) for t in texts):
        return None
    header = gen[len(probe) :]  # the assistant role header of a generation prompt
    pieces = [t[len(prefix) :] for t in texts]
    full = _render(ct, conv, "messages", msgs)
    if full != prefix + "".join(pieces):
        return None
    head_ids = ct.encode(prefix)
    piece_ids = ct.encoder.encode_many(pieces)
    full_ids = ct.encode(full)
    ct.check_bos(full_ids, conv, "messages")
    if full_ids != head_ids + [t for p in piece_ids for t in p]:
        return None
    header_ids = ct.encoder.encode(header)
    masks = []
    for j, (m, ids) in enumerate(zip(turns, piece_ids)):
        mask = np.zeros(len(ids), np.bool_)
        if m["role"] == "assistant":
            if not pieces[j].startswith(header) or ids[: len(header_ids)] != header_ids:
                return None
            mask[len(header_ids) :] = True
        masks.append(mask)
    if len(turns) > 1 and pieces[1:] and ct.encode(prefix + pieces[1]) != head_ids + piece_ids[1]:
        return None  # a window starting later would join differently
    return Turns(
        np.asarray(head_ids, np.int32),
        tuple(np.asarray(x, np.int32) for x in piece_ids),
        tuple(masks),
        tuple(m["role"] for m in turns),
        tuple(m.label for m in conv.messages[n_head:]),
    )


def _keep_last_start(turns: Turns, max_len: int) -> int:
    """The first turn kept by `keep_last_turns`: drop whole exchanges (two turns) from the front
    until the rest fits, keeping at least one turn before the last one."""
    suffix = np.cumsum(turns.lengths[::-1])[::-1] + len(turns.head)  # tokens of turns[s:]
    s = 0
    while suffix[s] > max_len and len(turns.ids) - s >= 3:
        s += 2
    return s


def conversation_windows(turns: Turns, max_len: int) -> list[tuple[int, int, list[int]]]:
    """Windows `(start, end, target turns)` of at most `max_len` tokens over `turns` (module
    docstring); every assistant turn is a target of exactly one window."""
    n, lengths, h = len(turns.ids), turns.lengths, len(turns.head)
    cum = np.concatenate([[0], np.cumsum(lengths)])  # tokens of turns[a:b] = cum[b] - cum[a]
    assistant = [k for k in range(n) if turns.roles[k] == "assistant"]
    out: list[tuple[int, int, list[int]]] = []
    covered = -1  # the last assistant turn that is a target so far
    s = 0
    while True:
        e = int(np.searchsorted(cum, cum[s] + max_len - h, side="right")) - 1  # longest fit
        e = max(e, s + 1)  # one turn longer than a window alone: cut at the end
        targets = [k for k in assistant if covered < k < e and k >= s]
        if targets:
            out.append((s, e, targets))
            covered = targets[-1]
        rest = [k for k in assistant if k > covered]
        if not rest:
            return out
        a = rest[0]  # the next target: start with up to half a window of context before it
        s_next = a
        while (
            s_next - 1 > s
            and cum[a + 1] - cum[s_next - 1] + h <= max_len
            and (cum[e] - cum[s_next - 1] <= max_len // 2)
        ):
            s_next -= 1
        s = max(s_next, s + 1)


def tokenize_conversation(
    ct: ChatTokenizer, conv: Conversation, trunc: Truncation, skips: SkipCounter, index: int = 0
) -> TokenizedConversation | None:
    """Tokens and assistant-only loss mask of one conversation, or None if skipped (counted).

    Raises:
        DataError: template or tokenizer inconsistencies, a too-long row under policy "error".
        ValueError: `trunc.windows` (several results: use `tokenize_session`).
    """
    if trunc.windows:
        raise ValueError("Truncation.windows gives several windows: use tokenize_session")
    out = tokenize_session(ct, conv, trunc, skips, index)
    return out[0] if out else None


def tokenize_session(
    ct: ChatTokenizer, conv: Conversation, trunc: Truncation, skips: SkipCounter, index: int = 0
) -> list[TokenizedConversation]:
    """Tokens and assistant-only loss masks of one conversation: one entry, several windows
    (`trunc.windows`), or none if skipped (counted).

    Raises:
        DataError: template or tokenizer inconsistencies, a too-long row under policy "error".
    """
    _check_specials(ct, conv)
    turns = _split_turns(ct, conv)
    if turns is None:  # a template whose pieces do not concatenate: render each candidate
        if trunc.windows:
            skips.count("conversation: template not turn by turn, no windows (keep_last_turns)")
        t = _tokenize_conversation_slow(ct, conv, trunc, skips, index)
        return [] if t is None else [t]
    total = int(sum(m.sum() for m in turns.masks))
    n = len(turns.ids)
    full_len = len(turns.head) + int(turns.lengths.sum())
    if full_len <= trunc.max_len:
        out = [_tokenized(turns, 0, n, None, index)]
    elif trunc.windows:
        out = []
        for s, e, targets in conversation_windows(turns, trunc.max_len):
            t = _tokenized(turns, s, e, targets, index)
            if len(t.tokens) > trunc.max_len:
                t = dataclasses.replace(
                    t, tokens=t.tokens[: trunc.max_len], loss_mask=t.loss_mask[: trunc.max_len]
                )
                skips.count("conversation: cut a turn longer than a window")
            out.append(t)
        skips.count("conversation: cut into windows")
        skips.count("conversation windows", len(out))
    elif trunc.policy != "keep_last_turns":
        _too_long(conv, trunc, full_len, "messages", skips)
        skips.count_assistant_tokens(total, 0)
        return []
    else:
        s = _keep_last_start(turns, trunc.max_len)
        if s:
            skips.count("conversation: dropped oldest turns to fit max_len")
        t = _tokenized(turns, s, n, None, index)
        if len(t.tokens) > trunc.max_len:
            mask = t.loss_mask[: trunc.max_len]
            if _too_few_targets_left(conv, trunc, mask, total, skips):
                return []
            t = dataclasses.replace(t, tokens=t.tokens[: trunc.max_len], loss_mask=mask)
            skips.count("conversation: cut the end to fit max_len")
        out = [t]
    skips.count_assistant_tokens(total, int(sum(t.loss_mask.sum() for t in out)))
    return out


def _too_few_targets_left(
    conv: Conversation, trunc: Truncation, mask: np.ndarray, total: int, skips: SkipCounter
) -> bool:
    """Whether cutting at max_len leaves fewer than `min_reply_tokens` targets (then skipped and
    counted, with none of the conversation's `total` assistant tokens kept)."""
    if mask.sum() >= trunc.min_reply_tokens:
        return False
    skips.skip(
        f"fewer than {trunc.min_reply_tokens} assistant tokens left within max_len {trunc.max_len}",
        f"{conv.file}: row {conv.row}",
    )
    skips.count_assistant_tokens(total, 0)
    return True


def _tokenized(turns: Turns, s: int, e: int, targets, index: int) -> TokenizedConversation:
    ids, mask, spans = turns.join(s, e, targets)
    return TokenizedConversation(ids, mask, index, spans)


def _drop_oldest_exchange(messages: tuple[Message, ...]) -> tuple[Message, ...] | None:
    """Removes the first user/assistant exchange after an optional system message (None if that
    would leave no user turn before the last one)."""
    head = messages[:1] if messages[0].role == "system" else ()
    turns = messages[len(head) :]
    if len(turns) < 3:  # u,a,u,... : at least one exchange must stay in front of the last turn(s)
        return None
    return head + turns[2:]


def _tokenize_conversation_slow(
    ct: ChatTokenizer, conv: Conversation, trunc: Truncation, skips: SkipCounter, index: int = 0
) -> TokenizedConversation | None:
    """`tokenize_conversation` for templates that are not a prefix plus one piece per turn:
    renders the conversation again for each exchange it drops (no windows)."""
    messages = conv.messages
    dropped, total = 0, None
    while True:
        ids, mask = _conversation_ids(ct, conv, messages)
        total = int(mask.sum()) if total is None else total  # of the whole conversation
        if len(ids) <= trunc.max_len:
            break
        if trunc.policy != "keep_last_turns":
            _too_long(conv, trunc, len(ids), "messages", skips)
            skips.count_assistant_tokens(total, 0)
            return None
        shorter = _drop_oldest_exchange(messages)
        if shorter is None:
            break
        messages, dropped = shorter, dropped + 1
    if dropped:
        skips.count("conversation: dropped oldest turns to fit max_len")
    if messages[0].role == "assistant":
        skips.count("conversation: opening assistant turn kept as context only (chat template)")
    if len(ids) > trunc.max_len:
        ids, mask = ids[: trunc.max_len], mask[: trunc.max_len]
        if _too_few_targets_left(conv, trunc, mask, total, skips):
            return None
        skips.count("conversation: cut the end to fit max_len")
    skips.count_assistant_tokens(total, int(mask.sum()))
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
        if m["role"] != "assistant" or j == 0:  # an opening with no turn before it: context
            continue  # (transformers cannot render the empty conversation before it)
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
    first = True
    while True:
        p, c, r = _pair_ids(ct, pair, prompt)
        longest = len(p) + max(len(c), len(r))
        if longest <= trunc.max_len:
            break
        if trunc.policy != "keep_last_turns":
            _too_long(pair, trunc, longest, "chosen" if len(c) >= len(r) else "rejected", skips)
            return None
        if first and len(prompt) > 4:  # a long prompt: choose its first turn from turn lengths
            first = False
            turns = _split_turns(ct, Conversation(prompt, pair.id, pair.file, pair.row))
            if turns is not None:
                room = trunc.max_len - (len(p) - len(turns.head) - int(turns.lengths.sum()))
                k = _keep_last_start(turns, room - max(len(c), len(r)))
                if k:
                    head = prompt[: len(prompt) - len(turns.ids)]
                    prompt, dropped = head + prompt[len(head) + k :], dropped + k // 2
                    continue
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
    progress: bool = True,
) -> list[Tokenized]:
    """Tokenizes every example (all conversations or all pairs); skips are counted in `skips`.

    `index` of each result is the example's position in `examples` (windows of one conversation
    share it). A progress bar (stderr) shows for 2,000 rows or more unless `progress=False`.
    """
    skips = SkipCounter() if skips is None else skips
    kinds = {type(e) for e in examples}
    if len(kinds) > 1:
        raise ValueError(f"examples mix {sorted(k.__name__ for k in kinds)}; tokenize them apart")
    out: list[Tokenized] = []
    bar = tqdm.tqdm(
        examples, desc="tokenizing", unit="row", disable=not progress or len(examples) < 2000
    )
    for i, ex in enumerate(bar):
        try:
            if isinstance(ex, Conversation):
                out.extend(tokenize_session(ct, ex, trunc, skips, i))
            else:
                t = tokenize_pair(ct, ex, trunc, skips, i)
                if t is not None:
                    out.append(t)
        except DataError as e:
            handle(e, on_error, skips)
    return out
