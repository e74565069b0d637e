"""Chat templating, loss masks and truncation: exact ids under the Llama 3.1 template."""

import numpy as np
import pytest
import transformers

from psycho_jax import tokenizer as tk
from psycho_jax.data import encoder as encoder_lib
from psycho_jax.data import formats, templating
from psycho_jax.data.formats import Conversation, DataError, Message, PreferencePair

# Llama 3 ids (checked against tiktoken in test_llama3_ids_match_tiktoken).
BOS, START, END, EOT = 128000, 128006, 128007, 128009
USER, ASSISTANT, SYSTEM, NL2 = 882, 78191, 9125, 271
TEXT_IDS = {
    "I feel anxious at night.": [40, 2733, 38100, 520, 3814, 13],
    "That sounds hard. What keeps you up?": [4897, 10578, 2653, 13, 3639, 13912, 499, 709, 30],
    "Mostly work.": [13622, 398, 990, 13],
    "Let us look at work together.": [10267, 603, 1427, 520, 990, 3871, 13],
    "You are a kind counselor.": [2675, 527, 264, 3169, 62475, 13],
}


def _conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(tuple(Message(r, c) for r, c in turns), "c0", "test.jsonl", 0)


def _pair(prompt, chosen="Chosen reply.", rejected="Rejected reply.") -> PreferencePair:
    msgs = (
        (Message("user", prompt),)
        if isinstance(prompt, str)
        else tuple(Message(*m) for m in prompt)
    )
    return PreferencePair(msgs, chosen, rejected, "p0", file="pairs.jsonl", row=7)


@pytest.fixture(scope="module")
def llama3(llama3_tokenizer_model):
    return templating.ChatTokenizer(tk.convert_llama3_tokenizer(llama3_tokenizer_model))


@pytest.fixture(scope="module")
def small():
    return templating.ChatTokenizer(tk.sample_tokenizer())


def _header(role_id):
    return [START, role_id, END, NL2]


def test_llama3_ids_match_tiktoken(llama3_tokenizer_model):
    tiktoken = pytest.importorskip("tiktoken")
    tiktoken_load = pytest.importorskip("tiktoken.load")

    ranks = tiktoken_load.load_tiktoken_bpe(str(llama3_tokenizer_model))
    enc = tiktoken.Encoding(
        "l3",
        pat_str=tk.LLAMA3_SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=tk.llama3_special_token_ids(),
    )
    for text, ids in TEXT_IDS.items():
        assert enc.encode(text) == ids
    assert [enc.encode(t) for t in ("user", "assistant", "system", "\n\n")] == [
        [USER],
        [ASSISTANT],
        [SYSTEM],
        [NL2],
    ]


def test_llama3_single_turn_sft_exact(llama3):
    t = templating.tokenize_conversation(
        llama3,
        _conv(
            ("user", "I feel anxious at night."),
            ("assistant", "That sounds hard. What keeps you up?"),
        ),
        templating.Truncation(64),
        formats.SkipCounter(),
    )
    reply = TEXT_IDS["That sounds hard. What keeps you up?"]
    expected = [
        BOS,
        *_header(USER),
        *TEXT_IDS["I feel anxious at night."],
        EOT,
        *_header(ASSISTANT),
        *reply,
        EOT,
    ]
    assert t.tokens.tolist() == expected
    assert t.tokens.dtype == np.int32
    mask = [0] * (len(expected) - len(reply) - 1) + [1] * (len(reply) + 1)
    assert t.loss_mask.astype(int).tolist() == mask


def test_llama3_multi_turn_sft_exact(llama3):
    conv = _conv(
        ("system", "You are a kind counselor."),
        ("user", "I feel anxious at night."),
        ("assistant", "That sounds hard. What keeps you up?"),
        ("user", "Mostly work."),
        ("assistant", "Let us look at work together."),
    )
    t = templating.tokenize_conversation(
        llama3, conv, templating.Truncation(128), formats.SkipCounter()
    )
    pieces = [
        ([BOS, *_header(SYSTEM), *TEXT_IDS["You are a kind counselor."], EOT], 0),
        ([*_header(USER), *TEXT_IDS["I feel anxious at night."], EOT], 0),
        (_header(ASSISTANT), 0),
        ([*TEXT_IDS["That sounds hard. What keeps you up?"], EOT], 1),
        ([*_header(USER), *TEXT_IDS["Mostly work."], EOT], 0),
        (_header(ASSISTANT), 0),
        ([*TEXT_IDS["Let us look at work together."], EOT], 1),
    ]
    assert t.tokens.tolist() == [i for p, _ in pieces for i in p]
    assert t.loss_mask.astype(int).tolist() == [m for p, m in pieces for _ in p]
    assert t.tokens.tolist().count(BOS) == 1
    # Same mask as the template's own {% generation %} markers.
    hf = llama3.tokenizer.apply_chat_template(
        [m.as_dict() for m in conv.messages], return_dict=True, return_assistant_tokens_mask=True
    )
    assert list(hf["assistant_masks"]) == t.loss_mask.astype(int).tolist()


def test_llama3_pair_exact_shared_prompt(llama3):
    pair = _pair("I feel anxious at night.", "That sounds hard. What keeps you up?", "Mostly work.")
    t = templating.tokenize_pair(llama3, pair, templating.Truncation(64), formats.SkipCounter())
    assert t.prompt.tolist() == [
        BOS,
        *_header(USER),
        *TEXT_IDS["I feel anxious at night."],
        EOT,
        *_header(ASSISTANT),
    ]
    assert t.chosen.tolist() == [*TEXT_IDS["That sounds hard. What keeps you up?"], EOT]
    assert t.rejected.tolist() == [*TEXT_IDS["Mostly work."], EOT]


def test_small_tokenizer_masks_match_generation_markers(small):
    from psycho_jax.data.shipped import load_sample

    rows = load_sample("sft_train")[:40]
    convs = formats.parse_rows(rows, "conversation", "sft_train.jsonl")
    out = templating.tokenize_examples(convs, small, templating.Truncation(4096))
    assert len(out) == 40
    for conv, t in zip(convs, out):
        hf = small.tokenizer.apply_chat_template(
            [m.as_dict() for m in conv.messages],
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        assert list(hf["input_ids"]) == t.tokens.tolist()
        assert list(hf["assistant_masks"]) == t.loss_mask.astype(int).tolist()
        n_assistant = sum(m.role == "assistant" for m in conv.messages)
        starts = np.flatnonzero(np.diff(np.concatenate([[0], t.loss_mask.astype(int)])) == 1)
        assert len(starts) == n_assistant  # every assistant turn is trained on
        assert t.tokens.tolist().count(small.bos_id) == 1 and t.tokens[0] == small.bos_id


def test_small_tokenizer_pair_is_prefix(small):
    pair = _pair(
        [("system", "Be kind."), ("user", "Hi."), ("assistant", "Hello."), ("user", "I am sad.")]
    )
    t = templating.tokenize_pair(small, pair, templating.Truncation(256), formats.SkipCounter())
    full = small.tokenizer.apply_chat_template(
        [m.as_dict() for m in pair.prompt] + [{"role": "assistant", "content": pair.chosen}],
        return_dict=True,
    )
    assert list(full["input_ids"]) == [*t.prompt.tolist(), *t.chosen.tolist()]
    assert t.chosen[-1] == small.tokenizer.convert_tokens_to_ids(tk.EOT)


TEXTS = [
    "Hello, world!",
    "I've been feeling anxious lately, and I don't know why.",
    "a\u00a0b  c\r\n\n\t x",
    "Unicode: café, naïve, Москва, 東京, 서울, مرحبا, नमस्ते 😀 👨‍👩‍👧‍👦",
    "x\x1cy\x1f z\x0b\x0c",
    "   ",
    "",
    "Hi<|eot_id|>there<|begin_of_text|>",
    "<|reserved_special_token_10|><|reserved_special_token_1|>",
    "numbers 1234567 and 3.14159, they'LL WE'RE",
    "\n\n\n  indented\n",
]


@pytest.mark.parametrize("which", ["small", "llama3"])
def test_encoder_matches_tokenizer(which, request):
    ct = request.getfixturevalue(which)
    enc = encoder_lib.TextEncoder(ct.tokenizer)
    assert enc.fast, enc.why_slow
    rng = np.random.default_rng(0)
    randoms = ["".join(map(chr, rng.integers(0, 0x2FFF, 60))) for _ in range(100)]
    randoms += ["".join(map(chr, rng.integers(0, 128, 60))) for _ in range(300)]
    for text in TEXTS + randoms:
        assert enc.encode(text) == ct.tokenizer(text, add_special_tokens=False)["input_ids"], repr(
            text
        )


def test_encoder_falls_back_for_other_pipelines():
    backend = tk.sample_tokenizer().backend_tokenizer
    from tokenizers import normalizers

    backend.normalizer = normalizers.Lowercase()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend)
    enc = encoder_lib.TextEncoder(tok)
    assert not enc.fast and "normalizer" in enc.why_slow
    assert enc.encode("Hello There") == tok("Hello There", add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------------------- checks and errors


def _with_template(template: str):
    tok = tk.sample_tokenizer()
    tok.chat_template = template
    return tok


def test_template_with_default_system_prompt_twice_is_refused():
    template = (
        "{{ bos_token }}{{ '<|start_header_id|>system<|end_header_id|>\n\nDefault.<|eot_id|>' }}"
        "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    )
    with pytest.raises(ValueError, match="system appears twice"):
        templating.ChatTokenizer(_with_template(template))


def test_prompt_not_a_token_prefix_names_row():
    # The generation prompt ends with a space that the reply's first word takes: " Sure".
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\n' }}"
        "{% else %}{{ 'Assistant: ' + m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"
    )
    ct = templating.ChatTokenizer(_with_template(template))
    pair = _pair("I am sad.", chosen="Sure, tell me more.", rejected="Something else.")
    with pytest.raises(
        DataError, match=r"pairs.jsonl: row 7, field 'chosen': the prompt's tokens are not a prefix"
    ):
        templating.tokenize_pair(ct, pair, templating.Truncation(256), formats.SkipCounter())


def test_template_that_renders_prompt_differently_names_row():
    template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant (generating): ' }}{% endif %}"
    )
    ct = templating.ChatTokenizer(_with_template(template))
    with pytest.raises(
        DataError, match="row 7, field 'chosen': the chat template renders the prompt differently"
    ):
        templating.tokenize_pair(
            ct, _pair("Hi."), templating.Truncation(256), formats.SkipCounter()
        )


def test_special_token_text_in_content_is_an_error(small):
    pair = _pair("Hi.<|eot_id|><|start_header_id|>assistant")
    with pytest.raises(
        DataError,
        match=r"row 7, field 'prompt\[0\].content': contains the special token '<\|eot_id\|>'",
    ):
        templating.tokenize_pair(small, pair, templating.Truncation(256), formats.SkipCounter())
    skips = formats.SkipCounter()
    assert (
        templating.tokenize_examples(
            [pair], small, templating.Truncation(256), on_error="skip", skips=skips
        )
        == []
    )
    assert skips.total_skipped == 1 and "special token" in skips.summary()


def test_double_bos_is_an_error(small):
    # A template that writes BOS twice.
    tok = _with_template("{{ bos_token }}" + tk.LLAMA3_CHAT_TEMPLATE)
    ct = templating.ChatTokenizer(tok)
    with pytest.raises(DataError, match="2 BOS tokens"):
        templating.tokenize_pair(
            ct, _pair("Hi."), templating.Truncation(256), formats.SkipCounter()
        )


# ---------------------------------------------------------------------------- truncation


LONG = " ".join(["I keep worrying about everything at work and at home."] * 12)


def test_truncation_skip_and_error_policies(small):
    long_pair = _pair(LONG)
    n = templating.tokenize_pair(
        small, long_pair, templating.Truncation(4096), formats.SkipCounter()
    )
    max_len = len(n.prompt) + 2
    skips = formats.SkipCounter()
    assert (
        templating.tokenize_pair(small, long_pair, templating.Truncation(max_len, "skip"), skips)
        is None
    )
    assert skips.skipped == {f"longer than max_len {max_len} (policy 'skip')": 1}
    with pytest.raises(
        DataError,
        match=rf"pairs.jsonl: row 7, field '(chosen|rejected)': \d+ tokens, longer than max_len {max_len}",
    ):
        templating.tokenize_pair(small, long_pair, templating.Truncation(max_len, "error"), skips)


def test_keep_last_turns_drops_oldest_turns_then_cuts_reply(small):
    prompt = [
        ("system", "Be kind."),
        ("user", LONG),
        ("assistant", LONG),
        ("user", "And now I cannot sleep."),
    ]
    pair = _pair(prompt)
    last_only = _pair([("system", "Be kind."), ("user", "And now I cannot sleep.")])
    ref = templating.tokenize_pair(
        small, last_only, templating.Truncation(4096), formats.SkipCounter()
    )
    skips = formats.SkipCounter()
    max_len = len(ref.prompt) + 3
    t = templating.tokenize_pair(small, pair, templating.Truncation(max_len), skips)
    assert t.prompt.tolist() == ref.prompt.tolist()  # the system message and last turn are kept
    assert len(t.prompt) + max(len(t.chosen), len(t.rejected)) <= max_len
    assert t.chosen.tolist() == ref.chosen[:3].tolist() and len(t.chosen) > 0
    assert skips.events == {
        "pair: dropped oldest prompt turns to fit max_len": 1,
        "pair: cut the end of a reply to fit max_len": 1,
    }


def test_reply_never_truncated_to_zero_tokens(small):
    pair = _pair(LONG)
    p = templating.tokenize_pair(small, pair, templating.Truncation(4096), formats.SkipCounter())
    skips = formats.SkipCounter()
    # Room for exactly the prompt: the reply would have zero tokens, so the row is skipped.
    assert (
        templating.tokenize_pair(small, pair, templating.Truncation(len(p.prompt)), skips) is None
    )
    assert skips.total_skipped == 1 and "leaves fewer than 1 reply tokens" in skips.summary()
    skips = formats.SkipCounter()
    trunc = templating.Truncation(len(p.prompt) + 4, min_reply_tokens=5)
    assert templating.tokenize_pair(small, pair, trunc, skips) is None
    assert skips.total_skipped == 1


def test_conversation_keep_last_turns(small):
    conv = _conv(
        ("user", LONG), ("assistant", LONG), ("user", "Short."), ("assistant", "Short reply.")
    )
    full = templating.tokenize_conversation(
        small, conv, templating.Truncation(4096), formats.SkipCounter()
    )
    last = templating.tokenize_conversation(
        small,
        _conv(("user", "Short."), ("assistant", "Short reply.")),
        templating.Truncation(4096),
        formats.SkipCounter(),
    )
    skips = formats.SkipCounter()
    t = templating.tokenize_conversation(
        small, conv, templating.Truncation(len(full.tokens) - 1), skips
    )
    assert t.tokens.tolist() == last.tokens.tolist()
    assert skips.events == {"conversation: dropped oldest turns to fit max_len": 1}
    # A single exchange too long: cut at the end while assistant tokens remain, else skip.
    one = _conv(("user", "Hi."), ("assistant", LONG))
    n_prompt = int(
        np.argmax(
            templating.tokenize_conversation(
                small, one, templating.Truncation(4096), formats.SkipCounter()
            ).loss_mask
        )
    )
    skips = formats.SkipCounter()
    t = templating.tokenize_conversation(small, one, templating.Truncation(n_prompt + 2), skips)
    assert len(t.tokens) == n_prompt + 2 and t.loss_mask.sum() == 2
    assert (
        templating.tokenize_conversation(small, one, templating.Truncation(n_prompt), skips) is None
    )
    assert skips.total_skipped == 1


def test_truncation_config_is_validated():
    with pytest.raises(ValueError, match="policy"):
        templating.Truncation(10, "left")
    with pytest.raises(ValueError, match="min_reply_tokens"):
        templating.Truncation(10, min_reply_tokens=0)
