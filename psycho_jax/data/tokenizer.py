"""Llama 3 tokenizers: Meta's tiktoken file converted, and small Llama-3-style BPEs trained here.

Both builders return a `transformers.PreTrainedTokenizerFast` with the same conventions, so the rest
of the code never asks which one it holds:

- a byte-level BPE behind the Llama 3 pre-tokenizer split (`LLAMA3_SPLIT_PATTERN`);
- the 256 Llama 3.1 special tokens (`LLAMA3_SPECIAL_TOKENS`) right after the base vocabulary:
  ids 128000..128255 for Meta's file, `vocab_size - 256 .. vocab_size - 1` for a small one;
- `bos_token` `<|begin_of_text|>`, added once by the post-processor when `add_special_tokens=True`;
- `eos_token` `<|eot_id|>`: a chat model ends its turn with it, so generation stops there and SFT
  teaches it. Meta's base-model `<|end_of_text|>` and 3.1's `<|eom_id|>` also stop generation
  (`LLAMA3_STOP_TOKENS`);
- `pad_token` `<|finetune_right_pad_id|>`, the token Meta reserved for padding in 3.1;
- `LLAMA3_CHAT_TEMPLATE`: the Llama 3.1 chat format, with no default system prompt, and
  `{% generation %}` markers so that `apply_chat_template(..., return_assistant_tokens_mask=True,
  return_dict=True)` gives an assistant-only loss mask.

Example:
    tok = convert_llama3_tokenizer("tokenizer.model", out_dir="/tmp/llama3_tok")
    batch = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from pathlib import Path

import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from psycho_jax.data import shipped

LLAMA3_NUM_BASE_TOKENS = 128_000
"""Size of the base (BPE) vocabulary of Meta's Llama 3 `tokenizer.model`."""
NUM_SPECIAL_TOKENS = 256
"""Special tokens that follow the base vocabulary, in Llama 3 and in the small tokenizers alike."""

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Meta's pre-tokenizer regex (tiktoken's `pat_str`): text is split on it before BPE."""

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
FINETUNE_RIGHT_PAD = "<|finetune_right_pad_id|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOM = "<|eom_id|>"
EOT = "<|eot_id|>"
PYTHON_TAG = "<|python_tag|>"

BOS_TOKEN = BEGIN_OF_TEXT
EOS_TOKEN = EOT
PAD_TOKEN = FINETUNE_RIGHT_PAD
LLAMA3_STOP_TOKENS = (EOT, END_OF_TEXT, EOM)
"""Tokens that end generation (Llama 3.1 Instruct's `generation_config.json` stops on all three)."""


def _llama3_special_tokens() -> tuple[str, ...]:
    # The 11 named slots of Llama 3.1, then reserved tokens numbered on from 3. This is the table of
    # Hugging Face's meta-llama/Llama-3.1-8B tokenizer and of Meta's 3.1 release (128005 is
    # `<|reserved_special_token_2|>`, 128011 is `_3`, 128255 is `_247`). Later llama-models code
    # renamed 128005 `<|step_id|>` and renumbered from 2; we keep the released checkpoints' table.
    named = (
        BEGIN_OF_TEXT,  # 128000
        END_OF_TEXT,  # 128001
        "<|reserved_special_token_0|>",  # 128002
        "<|reserved_special_token_1|>",  # 128003
        FINETUNE_RIGHT_PAD,  # 128004
        "<|reserved_special_token_2|>",  # 128005
        START_HEADER,  # 128006
        END_HEADER,  # 128007
        EOM,  # 128008
        EOT,  # 128009
        PYTHON_TAG,  # 128010
    )
    reserved = tuple(
        f"<|reserved_special_token_{3 + i}|>" for i in range(NUM_SPECIAL_TOKENS - len(named))
    )
    return named + reserved


LLAMA3_SPECIAL_TOKENS: tuple[str, ...] = _llama3_special_tokens()
"""The 256 special token strings in id order (offset 0 is `<|begin_of_text|>`)."""


def llama3_special_token_ids(num_base_tokens: int = LLAMA3_NUM_BASE_TOKENS) -> dict[str, int]:
    """Special token string -> id when the special tokens follow `num_base_tokens` base tokens.

    Args:
        num_base_tokens: size of the BPE vocabulary before the special tokens (128000 for Llama 3,
            `vocab_size - 256` for a tokenizer from `make_llama3_style_tokenizer`).

    Returns:
        A dict of all 256 special tokens, e.g. `{"<|begin_of_text|>": 128000, ...}` by default.
    """
    return {token: num_base_tokens + i for i, token in enumerate(LLAMA3_SPECIAL_TOKENS)}


LLAMA3_CHAT_TEMPLATE = (
    "{#- Llama 3.1 chat format, without a default system prompt. Assistant content and its"
    " <|eot_id|> are marked as generation, for assistant-only loss masks. #}"
    "{{- '" + BEGIN_OF_TEXT + "' -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is not string -%}"
    "{{- raise_exception('Llama 3 chat template: message content must be a string') -}}"
    "{%- endif -%}"
    "{{- '" + START_HEADER + "' + message['role'] + '" + END_HEADER + "\\n\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] | trim + '" + EOT + "' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- message['content'] | trim + '" + EOT + "' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '" + START_HEADER + "assistant" + END_HEADER + "\\n\\n' -}}"
    "{%- endif -%}"
)
"""Jinja template of the Llama 3.1 chat format.

Renders `<|begin_of_text|>`, then for each message
`<|start_header_id|>{role}<|end_header_id|>\\n\\n{content stripped}<|eot_id|>`, and with
`add_generation_prompt=True` a final `<|start_header_id|>assistant<|end_header_id|>\\n\\n`. Unlike
Hugging Face's official 3.1 template it adds no "Cutting Knowledge Date" system message: the
conversation is rendered exactly as given.

Assistant mask: `{% generation %}` wraps each assistant message's content AND its closing
`<|eot_id|>`, so `return_assistant_tokens_mask=True` marks those tokens and SFT trains the model to end
its turn (the eos token). The role header before it is prompt, not target, and is left out.

BOS: the template writes `<|begin_of_text|>` itself, so its text must be tokenized with
`add_special_tokens=False` (`apply_chat_template(tokenize=True)` does so); `tokenizer(text)` with the
default `add_special_tokens=True` would add a second BOS.

As in Meta's and Hugging Face's Llama 3 tokenizers, special-token text inside a message (a literal
`<|eot_id|>`) is encoded as that special token; clean such text out of untrusted data beforehand.
"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


_BYTE_ENCODER = _bytes_to_unicode()


def _token_str(token: bytes) -> str:
    return "".join(_BYTE_ENCODER[b] for b in token)


def _read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parses a tiktoken BPE file (`base64-token rank` a line, ranks 0, 1, 2, ... in order).

    Raises:
        ValueError: naming the file (and the line) when it is missing, a line is malformed, a rank
            is out of sequence, a token repeats, or a single byte is missing.
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such tokenizer file")
    ranks: dict[bytes, int] = {}
    with path.open("rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 'base64-token rank', got {len(fields)} field(s)"
                )
            try:
                token = base64.b64decode(fields[0], validate=True)
                rank = int(fields[1])
            except (binascii.Error, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: malformed line ({e})") from None
            if not token:
                raise ValueError(f"{path}:{lineno}: empty token")
            if rank != len(ranks):
                raise ValueError(f"{path}:{lineno}: expected rank {len(ranks)}, got {rank}")
            if token in ranks:
                raise ValueError(
                    f"{path}:{lineno}: token {token!r} already has rank {ranks[token]}"
                )
            ranks[token] = rank
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"{path}: {len(ranks)} ranks but {len(missing)} of the 256 single bytes are missing "
            f"(first: {missing[0]:#04x}); a byte-level BPE needs them all"
        )
    return ranks


def _merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """Recovers BPE merges that make a `tokenizers` BPE encode as tiktoken does with `ranks`.

    tiktoken repeatedly joins the adjacent pair whose concatenation has the lowest rank. Listing, for
    every token, each split into two tokens as a merge, ordered by the token's rank, gives the same
    choice in `tokenizers` (merge priority = rank of the result). Same algorithm as transformers'
    `TikTokenConverter`, which imports tiktoken; this one does not.
    """
    merges: list[tuple[bytes, bytes, int]] = []
    for token, rank in ranks.items():
        local = [
            (token[:i], token[i:], rank)
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        local.sort(key=lambda m: (ranks[m[0]], ranks[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])  # stable: ties keep the per-token order above
    return [(_token_str(a), _token_str(b)) for a, b, _ in merges]


def _assemble(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    out_dir: str | Path | None,
    model_max_length: int | None = None,
) -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE + Llama 3 split, special tokens, BOS/EOS/pad, chat template; saved if asked.

    `vocab` must hold ids 0..len(vocab)-1; the 256 special tokens get the ids after them.
    """
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("base vocabulary ids must be 0..n-1 without gaps")
    backend = tokenizers.Tokenizer(
        # ignore_merges: a pre-token that is itself in the vocabulary is one token, as in tiktoken.
        models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True)
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(tokenizers.Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL_TOKENS]
    )
    expected = llama3_special_token_ids(len(vocab))
    got = {t: backend.token_to_id(t) for t in LLAMA3_SPECIAL_TOKENS}
    if got != expected:  # a special token string that is also a base token would shift the ids
        raise ValueError("special tokens did not land right after the base vocabulary")
    bos_id = expected[BOS_TOKEN]
    # Exactly one BOS per sequence, as Meta's `encode(bos=True)`; pairs get one per segment, as HF's
    # Llama 3 tokenizer.json does.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0",
        pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        clean_up_tokenization_spaces=False,
        chat_template=LLAMA3_CHAT_TEMPLATE,
        **extra,
    )
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


def convert_llama3_tokenizer(
    tokenizer_model: str | Path, out_dir: str | Path | None = None
) -> transformers.PreTrainedTokenizerFast:
    """Converts Meta's Llama 3 `tokenizer.model` (tiktoken ranks) to a Hugging Face fast tokenizer.

    The result encodes text to the same ids as Meta's tiktoken tokenizer, has the 256 Llama 3.1
    special tokens after the base tokens (128000..128255 for Meta's file), and the conventions of
    this module: BOS `<|begin_of_text|>` added once by `add_special_tokens=True`, EOS `<|eot_id|>`,
    pad `<|finetune_right_pad_id|>`, and `LLAMA3_CHAT_TEMPLATE` (whose output is tokenized with
    `add_special_tokens=False`, as `apply_chat_template` does, so BOS is never doubled).

    Args:
        tokenizer_model: Meta's `tokenizer.model` (one `base64-token rank` a line, ranks 0..n-1), or
            a directory holding one. Any such file works; ids of special tokens start at n.
        out_dir: if given, the tokenizer is saved there with `save_pretrained`, and
            `transformers.AutoTokenizer.from_pretrained(out_dir)` loads it back unchanged.

    Returns:
        The converted tokenizer (`model_max_length` 131072, Llama 3.1's context).

    Raises:
        ValueError: the file is missing or malformed; the message names the file and line.
    """
    path = Path(tokenizer_model)
    if path.is_dir():
        path = path / "tokenizer.model"
    ranks = _read_tiktoken_ranks(path)
    vocab = {_token_str(token): rank for token, rank in ranks.items()}
    return _assemble(vocab, _merges_from_ranks(ranks), out_dir, model_max_length=131_072)


def make_llama3_style_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None
) -> transformers.PreTrainedTokenizerFast:
    """Trains a small byte-level BPE on `texts` with Llama 3's split, special tokens and template.

    The base vocabulary (the 256 bytes, then merges learned from `texts`) takes ids
    `0 .. vocab_size - 257`, and the same 256 special token strings as Llama 3 take the last ids
    `vocab_size - 256 .. vocab_size - 1`, so `len(tokenizer) == vocab_size` (Hugging Face's
    `tokenizer.vocab_size` counts the base vocabulary only). BOS, EOS, pad and chat template are those
    of `convert_llama3_tokenizer`. Pairs seen fewer than twice are never merged. Training is
    deterministic: the same texts and size give the same tokenizer.

    Args:
        texts: training text (an iterable is consumed once).
        vocab_size: total size, special tokens included; at least 512 (256 bytes + 256 specials).
        out_dir: if given, the tokenizer is saved there with `save_pretrained`.

    Returns:
        The trained tokenizer.

    Raises:
        ValueError: `vocab_size` is below 512, or `texts` hold too few distinct pairs to learn
            `vocab_size - 512` merges.
    """
    base_size = vocab_size - NUM_SPECIAL_TOKENS
    if base_size < 256:
        raise ValueError(
            f"vocab_size {vocab_size} < 512 (256 bytes + {NUM_SPECIAL_TOKENS} specials)"
        )
    trainer_backend = tokenizers.Tokenizer(models.BPE(fuse_unk=False))
    trainer_backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(tokenizers.Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=base_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    trainer_backend.train_from_iterator(texts, trainer=trainer)
    model = json.loads(trainer_backend.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if len(vocab) != base_size:
        raise ValueError(
            f"the texts gave a base vocabulary of {len(vocab)} tokens, not {base_size}: "
            f"train on more text or ask for a vocab_size of at most {len(vocab) + NUM_SPECIAL_TOKENS}"
        )
    return _assemble(vocab, merges, out_dir)


SAMPLE_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "assets" / "sample_tokenizer"
"""The small tokenizer shipped for the embedded sample data (built by `build_sample_tokenizer`)."""
SAMPLE_VOCAB_SIZE = 2048


def _sample_texts() -> Iterable[str]:
    for name in ("preference_train", "sft_train"):
        for row in shipped.load_sample(name):
            if "messages" in row:
                yield from (m["content"] for m in row["messages"])
            else:
                yield from (row["question"], row["chosen"], row["rejected"])


def build_sample_tokenizer(
    out_dir: str | Path = SAMPLE_TOKENIZER_DIR, vocab_size: int = SAMPLE_VOCAB_SIZE
) -> transformers.PreTrainedTokenizerFast:
    """Trains the shipped sample tokenizer on the embedded training splits (deterministic).

    Regenerate with `python -m psycho_jax.data.tokenizer --build-sample`.
    """
    return make_llama3_style_tokenizer(_sample_texts(), vocab_size, out_dir)


def sample_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """The tokenizer for the embedded sample data (Llama 3 conventions, 2,048 ids)."""
    return transformers.AutoTokenizer.from_pretrained(str(SAMPLE_TOKENIZER_DIR))


def load_tokenizer(spec: str | Path) -> transformers.PreTrainedTokenizerBase:
    """`"sample"` (the shipped tokenizer), Meta's `tokenizer.model` (or a directory holding only that),
    or a Hugging Face tokenizer directory."""
    if spec == "sample":
        return sample_tokenizer()
    if not spec:
        raise ValueError(
            "no tokenizer named: use 'sample', a tokenizer directory or tokenizer.model"
        )
    path = Path(spec)
    if path.name == "tokenizer.model" or (
        path.is_dir()
        and (path / "tokenizer.model").is_file()
        and not (path / "tokenizer.json").is_file()
    ):
        return convert_llama3_tokenizer(path)
    return transformers.AutoTokenizer.from_pretrained(str(spec))


def find_tokenizer(checkpoint: str | Path, override: str = "") -> str:
    """The tokenizer of a stage workdir (`<dir>/tokenizer`) or a HF directory, unless overridden."""
    if override:
        return override
    path = Path(checkpoint)
    if (path / "tokenizer").is_dir():
        return str(path / "tokenizer")
    if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        return str(path)
    raise FileNotFoundError(
        f"{path}: no tokenizer/ (stage workdir) or tokenizer.json (HF directory); pass --tokenizer"
    )


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--build-sample"]:
        raise SystemExit("usage: python -m psycho_jax.data.tokenizer --build-sample")
    print(build_sample_tokenizer().name_or_path or SAMPLE_TOKENIZER_DIR)
