"""Tokenizers: Meta's tiktoken file converted (checked against tiktoken), small trained BPEs."""

import base64
import itertools

import pytest
import tiktoken
import tiktoken.load
import transformers

from psycho_jax.data import tokenizer as tk

SAMPLES = [
    "Hello, world!",
    "I've been feeling anxious lately, and I don't know why. It's hard to sleep.",
    "Therapist: What would you like to talk about today?\nClient: My mother's illness.",
    "Numbers: 12345678, 3.14159, 2024-07-23, $1,000,000 and 007.",
    "they'll, we're, she'd, I'M, YOU'VE, it'S, can't, won't",
    "line one\nline two\r\nline three\n\n\n    indented\t\ttabs   \n  ",
    "   leading and trailing spaces   ",
    "Unicode: café, naïve, Zürich, Москва, 東京, 서울, مرحبا, नमस्ते",
    "Emoji: 😀 👍🏽 🧠❤️ 👨‍👩‍👧‍👦",
    "def f(x: int) -> int:\n    return x ** 2  # square\n\nprint(f(12))",
    '{"role": "user", "content": "hi"}   <html><body>&nbsp;</body></html>',
    "",
    " ",
    "\n",
    "a" * 300,
    "Grief isn't linear; some days are harder than others — and that's okay…",
]

CONVERSATION = [
    {"role": "system", "content": "You are a supportive counselor."},
    {"role": "user", "content": "  I can't stop worrying about work.\n"},
    {"role": "assistant", "content": "That sounds exhausting. What worries you most?\n\n"},
    {"role": "user", "content": "Deadlines, mostly."},
]


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


def _expected_chat_pieces(
    messages: list[dict[str, str]], add_generation_prompt: bool
) -> list[tuple[str, bool]]:
    """The Llama 3.1 format by hand, as (text, is_assistant_target) pieces."""
    pieces = [("<|begin_of_text|>", False)]
    for m in messages:
        pieces.append((_header(m["role"]), False))
        pieces.append((m["content"].strip() + "<|eot_id|>", m["role"] == "assistant"))
    if add_generation_prompt:
        pieces.append((_header("assistant"), False))
    return pieces


def _check_chat(tok, encode, messages, add_generation_prompt: bool) -> None:
    """Template text, ids, one BOS, and assistant mask against the format built by hand.

    `encode(text)` encodes text whose special tokens are allowed, with no BOS added.
    """
    pieces = _expected_chat_pieces(messages, add_generation_prompt)
    text = "".join(p for p, _ in pieces)
    assert tok.chat_template == tk.LLAMA3_CHAT_TEMPLATE
    rendered = tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert rendered == text
    out = tok.apply_chat_template(
        messages,
        add_generation_prompt=add_generation_prompt,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = list(out["input_ids"])
    assert ids == encode(text)
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids[0] == bos and ids.count(bos) == 1
    # Every piece boundary is at a special token, so the pieces encode independently.
    piece_ids = [encode(p) for p, _ in pieces]
    assert list(itertools.chain(*piece_ids)) == ids
    expected_mask = [int(target) for (_, target), p in zip(pieces, piece_ids) for _ in p]
    assert list(out["assistant_masks"]) == expected_mask
    masked = [i for i, m in zip(ids, out["assistant_masks"]) if m]
    assert tok.decode(masked) == "That sounds exhausting. What worries you most?<|eot_id|>"


# --------------------------------------------------------------------------------------------
# Meta's Llama 3 tokenizer.model (skipped when ../shared is absent)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama3(llama3_tokenizer_model, tmp_path_factory):
    """(converted in memory, reloaded with AutoTokenizer, tiktoken reference)."""
    out_dir = tmp_path_factory.mktemp("llama3_tokenizer")
    converted = tk.convert_llama3_tokenizer(llama3_tokenizer_model, out_dir=out_dir)
    reloaded = transformers.AutoTokenizer.from_pretrained(out_dir)
    reference = tiktoken.Encoding(
        name="llama3",
        pat_str=tk.LLAMA3_SPLIT_PATTERN,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(llama3_tokenizer_model)),
        special_tokens=tk.llama3_special_token_ids(),
    )
    return converted, reloaded, reference


def test_llama3_encode_matches_tiktoken(llama3):
    converted, reloaded, ref = llama3
    for text in SAMPLES:
        expected = ref.encode(text, disallowed_special=())
        for tok in (converted, reloaded):
            assert tok(text, add_special_tokens=False).input_ids == expected, text
            assert tok(text).input_ids == [128000, *expected], text
        assert reloaded.decode(expected) == text
        assert reloaded.decode([128000, *expected], skip_special_tokens=True) == text


def test_llama3_counsel_chat_matches_tiktoken(llama3, counsel_chat_csv):
    _, reloaded, ref = llama3
    text = counsel_chat_csv.read_text(encoding="utf-8")[:300_000]
    expected = ref.encode(text, disallowed_special=())
    assert reloaded(text, add_special_tokens=False).input_ids == expected


def test_llama3_special_tokens(llama3):
    _, tok, ref = llama3
    assert len(tok) == 128_256
    named = {
        "<|begin_of_text|>": 128000,
        "<|end_of_text|>": 128001,
        "<|reserved_special_token_0|>": 128002,
        "<|reserved_special_token_1|>": 128003,
        "<|finetune_right_pad_id|>": 128004,
        "<|reserved_special_token_2|>": 128005,
        "<|start_header_id|>": 128006,
        "<|end_header_id|>": 128007,
        "<|eom_id|>": 128008,
        "<|eot_id|>": 128009,
        "<|python_tag|>": 128010,
        "<|reserved_special_token_3|>": 128011,
        "<|reserved_special_token_247|>": 128255,
    }
    for token, token_id in named.items():
        assert tok.convert_tokens_to_ids(token) == token_id, token
        assert tok.convert_ids_to_tokens(token_id) == token
    all_ids = tk.llama3_special_token_ids()
    assert list(all_ids.values()) == list(range(128000, 128256))
    assert tok.convert_tokens_to_ids(list(all_ids)) == list(all_ids.values())
    assert (tok.bos_token, tok.bos_token_id) == ("<|begin_of_text|>", 128000)
    assert (tok.eos_token, tok.eos_token_id) == ("<|eot_id|>", 128009)
    assert (tok.pad_token, tok.pad_token_id) == ("<|finetune_right_pad_id|>", 128004)
    text = "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|python_tag|>"
    assert tok(text, add_special_tokens=False).input_ids == ref.encode(text, allowed_special="all")


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_llama3_chat_template(llama3, add_generation_prompt):
    converted, reloaded, ref = llama3
    for tok in (converted, reloaded):
        _check_chat(
            tok, lambda s: ref.encode(s, allowed_special="all"), CONVERSATION, add_generation_prompt
        )


# --------------------------------------------------------------------------------------------
# Small Llama-3-style tokenizers trained here
# --------------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    feelings = ["anxious", "sad", "overwhelmed", "lonely", "stressed", "hopeful", "tired", "angry"]
    topics = ["work", "my family", "school", "my partner", "money", "sleep", "the future"]
    texts = []
    for i, (f, t) in enumerate(itertools.product(feelings, topics)):
        texts.append(f"I've been feeling {f} about {t} for {i + 2} weeks. What can I do?")
        texts.append(f"It's understandable to feel {f}. Let's talk about {t} together.\n")
    return texts


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(trained in memory with vocab 512, reloaded with AutoTokenizer)."""
    out_dir = tmp_path_factory.mktemp("small_tokenizer")
    trained = tk.make_llama3_style_tokenizer(_corpus(), vocab_size=512, out_dir=out_dir)
    return trained, transformers.AutoTokenizer.from_pretrained(out_dir)


def test_small_special_tokens_at_the_end(small):
    for tok in small:
        assert len(tok) == 512
        ids = tok.convert_tokens_to_ids(list(tk.LLAMA3_SPECIAL_TOKENS))
        assert ids == list(range(256, 512))
        assert tk.llama3_special_token_ids(256) == dict(zip(tk.LLAMA3_SPECIAL_TOKENS, ids))
        assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (256, 265, 260)
        assert tok.convert_tokens_to_ids("<|start_header_id|>") == 262


def test_small_encode_one_bos_and_round_trip(small):
    trained, reloaded = small
    for text in SAMPLES:
        ids = trained(text).input_ids
        assert ids[0] == 256 and ids.count(256) == 1
        assert reloaded(text).input_ids == ids
        assert reloaded.decode(ids, skip_special_tokens=True) == text
    batch = reloaded(["hi", "I feel anxious"], padding=True)
    assert batch.input_ids[0][-1] == reloaded.pad_token_id
    assert batch.attention_mask[0][-1] == 0


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_small_chat_template(small, add_generation_prompt):
    for tok in small:
        _check_chat(
            tok,
            lambda s, tok=tok: tok(s, add_special_tokens=False).input_ids,
            CONVERSATION,
            add_generation_prompt,
        )


def test_chat_template_rejects_non_string_content(small):
    with pytest.raises(Exception, match="must be a string"):
        small[1].apply_chat_template([{"role": "user", "content": [{"type": "text"}]}])


def test_small_deterministic_and_learns_merges(tmp_path):
    texts = _corpus()
    a = tk.make_llama3_style_tokenizer(iter(texts), vocab_size=600)
    b = tk.make_llama3_style_tokenizer(texts, vocab_size=600)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) == 600 and a.convert_tokens_to_ids("<|begin_of_text|>") == 344
    text = "I've been feeling anxious about work."
    assert len(a(text, add_special_tokens=False).input_ids) < len(text.encode()) / 2
    with pytest.raises(ValueError, match="vocab_size"):
        tk.make_llama3_style_tokenizer(texts, vocab_size=511)
    with pytest.raises(ValueError, match="train on more text"):
        tk.make_llama3_style_tokenizer(texts[:2], vocab_size=4096)


# --------------------------------------------------------------------------------------------
# convert_llama3_tokenizer on small synthetic tiktoken files
# --------------------------------------------------------------------------------------------

_MERGED = [b"an", b"in", b"he", b" t", b" th", b" the", b"ing", b"  ", b"    ", b"\n\n", b"12"]


def _write_ranks(path, tokens: list[bytes]) -> None:
    lines = [f"{base64.b64encode(t).decode()} {rank}" for rank, t in enumerate(tokens)]
    path.write_text("\n".join(lines) + "\n")


def test_convert_synthetic_file_matches_tiktoken(tmp_path):
    # Single bytes in a scrambled order, so ranks are not byte values.
    singles = [bytes([(b * 37 + 11) % 256]) for b in range(256)]
    path = tmp_path / "tokenizer.model"
    _write_ranks(path, singles + _MERGED)
    tok = tk.convert_llama3_tokenizer(tmp_path, out_dir=tmp_path / "hf")
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    n = 256 + len(_MERGED)
    ref = tiktoken.Encoding(
        name="synthetic",
        pat_str=tk.LLAMA3_SPLIT_PATTERN,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(path)),
        special_tokens=tk.llama3_special_token_ids(n),
    )
    assert len(reloaded) == n + 256
    for text in [*SAMPLES, "the thing in the inn\n\n    1234 antheing"]:
        expected = ref.encode(text, disallowed_special=())
        for t in (tok, reloaded):
            assert t(text, add_special_tokens=False).input_ids == expected, text
            assert t(text).input_ids == [n, *expected]
        assert reloaded.decode(expected) == text
    assert (reloaded.bos_token_id, reloaded.eos_token_id, reloaded.pad_token_id) == (
        n,
        n + 9,
        n + 4,
    )
    _check_chat(reloaded, lambda s: ref.encode(s, allowed_special="all"), CONVERSATION, True)


@pytest.mark.parametrize(
    ("lines", "where", "what"),
    [
        (["YQ== 0", "Yg== 1 extra"], ":2:", "field"),
        (["YQ== 0", "!!!! 1"], ":2:", "malformed"),
        (["YQ== 0", "Yg== one"], ":2:", "malformed"),
        (["YQ== 0", "Yg== 2"], ":2:", "expected rank 1"),
        (["YQ== 0", "YQ== 1"], ":2:", "already has rank"),
        (["YQ== 0", "Yg== 1"], "", "single bytes are missing"),
    ],
)
def test_convert_rejects_bad_files(tmp_path, lines, where, what):
    path = tmp_path / "bad.model"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"bad\.model{where}.*{what}"):
        tk.convert_llama3_tokenizer(path)


def test_convert_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nothere.model"):
        tk.convert_llama3_tokenizer(tmp_path / "nothere.model")


def test_shipped_sample_tokenizer_is_reproducible(tmp_path):
    from psycho_jax.data import tokenizer as tk

    rebuilt = tk.build_sample_tokenizer(tmp_path)
    shipped = tk.sample_tokenizer()
    assert len(shipped) == tk.SAMPLE_VOCAB_SIZE == len(rebuilt)
    assert (tmp_path / "tokenizer.json").read_bytes() == (
        tk.SAMPLE_TOKENIZER_DIR / "tokenizer.json"
    ).read_bytes(), "regenerate with: python -m psycho_jax.data.tokenizer --build-sample"
    assert shipped.eos_token == "<|eot_id|>" and shipped.pad_token == "<|finetune_right_pad_id|>"
