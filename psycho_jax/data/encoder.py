"""Text -> token ids, exactly as the Hugging Face tokenizer does, fast enough for the loader.

Why this exists: on one CPU core the `tokenizers` library encodes Llama 3 text at ~350-450k tokens/s
on real counseling answers (the Llama 3 split regex dominates), i.e. ~600 preference pairs/s for
300-token replies, short of the 1,000 pairs/s the loader needs. Two observations make it cheap:

1. Hugging Face tokenizers cut text at added (special) tokens first and encode each piece between
   them on its own, so a chat rendered by the template is a sequence of segments
   (`<|start_header_id|>`, `user`, `<|end_header_id|>`, `\\n\\nmessage…`, `<|eot_id|>`, ...). A
   prompt's segments recur in `prompt+chosen` and `prompt+rejected`: each is encoded once (cache).
2. Within a segment, the Llama 3 pre-tokenizer splits on a regex and byte-level BPE encodes each
   piece independently, so pieces (words) can be cached too. Python's `regex` module runs the split
   pattern faster than `tokenizers`' Oniguruma build does here, and on ASCII-only text the standard
   `re` module runs an ASCII transcription of it (`_ASCII_SPLIT`) faster again (bench/RESULTS.md);
   text whose letters and digits are all Latin-1 (a no-break space, curly quotes, dashes, Spanish
   accents: over half of CounselChat's answers) gets a Latin-1 transcription (`_latin1_split`).

The fast path is taken only for tokenizers whose pipeline is exactly that (no normalizer; the Llama 3
split regex then byte-level mapping; a BPE model; added tokens matched verbatim), i.e. those built
by `psycho_jax.data.tokenizer`. Any other tokenizer goes through `tokenizers` unchanged. Tests check
both paths against `tokenizer(text, add_special_tokens=False)` on varied text.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence

import regex
import tokenizers
import transformers
from tokenizers import pre_tokenizers

from psycho_jax.data.tokenizer import LLAMA3_SPLIT_PATTERN

_MAX_CACHE = 200_000  # entries per cache; cleared when full (memory stays bounded)

_WS = " \\t\\n\\x0b\\x0c\\r"  # the ASCII characters with Unicode's White_Space property
_ASCII_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}"
    rf"| ?[^{_WS}A-Za-z0-9]+[\r\n]*|[{_WS}]*[\r\n]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+"
)
"""`LLAMA3_SPLIT_PATTERN` for ASCII-only text: `\\p{L}` is `A-Za-z`, `\\p{N}` is `0-9`, `\\s` is `_WS`."""

_BEYOND_LATIN1 = "".join(map(chr, [*range(0x2000, 0x2070), *range(0x20A0, 0x20C1)]))
"""General punctuation (spaces, dashes, quotes, ellipsis...) and currency signs: none is a letter or
a number, so text that holds only these beyond Latin-1 can take the Latin-1 split."""


def _latin1_split() -> tuple[re.Pattern, re.Pattern]:
    """(`LLAMA3_SPLIT_PATTERN` transcribed for stdlib `re`, a search that finds a character it does
    not cover). The classes are read off the `regex` module's `\\p{L}`, `\\p{N}` and `\\s` (the
    ones the general path runs), so they are exact for every character covered."""
    chars = [chr(c) for c in range(256)] + list(_BEYOND_LATIN1)
    letters = [c for c in chars if regex.match(r"\p{L}", c)]
    numbers = [c for c in chars if regex.match(r"\p{N}", c)]
    spaces = [c for c in chars if regex.match(r"\s", c)]
    assert all(ord(c) < 256 for c in letters + numbers), "only Latin-1 has letters and numbers"
    L, N, S = _class(letters), _class(numbers), _class(spaces)
    split = (
        rf"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{S}{L}{N}]+[\r\n]*"
        rf"|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+"
    )
    return re.compile(split), re.compile(rf"[^\x00-\xff{_class(_BEYOND_LATIN1)}]")


def _class(chars) -> str:
    """The inside of a `re` character class holding exactly `chars`."""
    return "".join(map(re.escape, chars))


def _fast_path_ok(backend: tokenizers.Tokenizer) -> tuple[bool, str]:
    """Whether a tokenizer's pipeline is the one the fast path reproduces, and why not."""
    if backend.normalizer is not None:
        return False, "has a normalizer"
    pre = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer else {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) != 2:
        return False, "pre-tokenizer is not Split + ByteLevel"
    split, byte_level = steps
    if (
        split.get("type") != "Split"
        or split.get("pattern", {}).get("Regex") != LLAMA3_SPLIT_PATTERN
        or split.get("behavior") != "Isolated"
        or split.get("invert")
    ):
        return False, "first pre-tokenizer is not the Llama 3 split"
    if (
        byte_level.get("type") != "ByteLevel"
        or byte_level.get("use_regex")
        or byte_level.get("add_prefix_space")
    ):
        return False, "second pre-tokenizer is not a plain ByteLevel"
    if type(backend.model).__name__ != "BPE":
        return False, "model is not BPE"
    for t in backend.get_added_tokens_decoder().values():
        if t.lstrip or t.rstrip or t.single_word:
            return False, f"added token {t.content!r} has strip/word options"
    return True, ""


class TextEncoder:
    """`encode(text) -> list[int]`: the ids of `tokenizer(text, add_special_tokens=False)`.

    Special-token text in `text` becomes those tokens, as in the tokenizer. Not thread-safe
    (caches); use one per thread.
    """

    def __init__(self, tokenizer: transformers.PreTrainedTokenizerBase, fast: bool = True):
        self.tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer
        ok, why = _fast_path_ok(self._backend)
        self.fast = fast and ok
        self.why_slow = "" if self.fast else (why or "fast path disabled")
        if self.fast:
            added = sorted(
                (t.content for t in self._backend.get_added_tokens_decoder().values()),
                key=len,
                reverse=True,
            )
            # Longest first at the leftmost position, as the tokenizers' added-vocabulary matcher.
            self._added_ids = {s: self._backend.token_to_id(s) for s in added}
            # Stdlib `re` (~3x faster here: every added token starts with the same literal, which
            # it searches for); the same leftmost, first-alternative semantics as `regex`.
            self._added_re = re.compile("(" + "|".join(map(re.escape, added)) + ")")
            self._split_re = regex.compile(LLAMA3_SPLIT_PATTERN)
            self._ascii_split_re = re.compile(_ASCII_SPLIT)
            self._latin1_split_re, self._not_latin1 = _latin1_split()
            self._byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
            self._model = self._backend.model
        self._segments: dict[str, list[int]] = {}
        self._pieces: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str) -> list[int]:
        if not self.fast:
            return self._backend.encode(text, add_special_tokens=False).ids
        out: list[int] = []
        for k, part in enumerate(self._added_re.split(text)):
            if not part:
                continue
            if k % 2:  # odd parts are the captured added tokens
                out.append(self._added_ids[part])
            else:
                out += self._segment(part)
        return out

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        if not self.fast:
            return [e.ids for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [self.encode(t) for t in texts]

    def _segment(self, text: str) -> list[int]:
        ids = self._segments.get(text)
        if ids is None:
            if len(self._segments) >= _MAX_CACHE:
                self._segments.clear()
            pieces = self._pieces
            if len(pieces) >= _MAX_CACHE:
                pieces.clear()
            if text.isascii():
                split = self._ascii_split_re
            elif self._not_latin1.search(text) is None:
                split = self._latin1_split_re
            else:
                split = self._split_re
            found = split.findall(text)
            try:
                ids = list(itertools.chain.from_iterable(map(pieces.__getitem__, found)))
            except KeyError:  # pieces not seen before: BPE them once
                for piece in found:
                    if piece not in pieces:
                        mapped = self._byte_level.pre_tokenize_str(piece)[0][0]
                        pieces[piece] = tuple(t.id for t in self._model.tokenize(mapped))
                ids = list(itertools.chain.from_iterable(map(pieces.__getitem__, found)))
            self._segments[text] = ids
        return ids
