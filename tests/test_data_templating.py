"""Chat templating, loss masks and truncation: exact ids under the Llama 3.1 template."""

import dataclasses

import numpy as np
import pytest
import transformers

from psycho_jax.data import encoder as encoder_lib
from psycho_jax.data import formats, templating
from psycho_jax.data import tokenizer as tk
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
    # Letters and digits in Latin-1, punctuation and spaces beyond it: the Latin-1 split.
    latin1 = [chr(c) for c in range(256)] + list(encoder_lib._BEYOND_LATIN1) + list(" 'sStTmM\n")
    randoms += ["".join(rng.choice(latin1, 60)) for _ in range(300)]
    assert all(enc._not_latin1.search(t) is None for t in randoms[-300:])
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


# ---------------------------------------------------------------------------- long sessions


def _session(n_messages: int, first: str = "assistant") -> Conversation:
    """A motivational-interviewing-shaped session: `n_messages` alternating turns of varied
    length, opening with `first`, ending with the assistant."""
    other = {"user": "assistant", "assistant": "user"}
    roles = [first if k % 2 == 0 else other[first] for k in range(n_messages)]
    if roles[-1] != "assistant":
        roles = roles[:-1]
    msgs = [
        Message(r, f"Turn {k}: " + "I hear that work feels heavy lately. " * (1 + k % 4), f"s{k}")
        for k, r in enumerate(roles)
    ]
    return Conversation((Message("system", "You are a counselor."), *msgs), "mi0", "mi.jsonl", 0)


def _last_turns(ct, conv, n_tokens, extra):
    """The last turns of `conv` whose pieces hold `n_tokens` tokens, plus `extra` turns more."""
    turns = templating._split_turns(ct, conv)
    k, acc = len(turns.ids), 0
    while acc < n_tokens:
        k -= 1
        acc += len(turns.ids[k])
    return conv.messages[1:][k - extra :]


def test_600_message_session_prepares_fast_and_equals_one_render(small):
    import time

    conv = _session(600)
    skips = formats.SkipCounter()
    t0 = time.perf_counter()
    t = templating.tokenize_conversation(small, conv, templating.Truncation(320), skips)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"600-message session took {elapsed:.2f}s"
    # The kept turns give exactly what rendering them alone gives (the slow, reference path),
    # and one exchange more would not fit.
    assert (
        len(t.tokens) <= 320 and skips.events["conversation: dropped oldest turns to fit max_len"]
    )
    for extra in (0, 2):
        n = len(t.tokens) - len(small.encode(small.render([conv.messages[0].as_dict()])))
        ref = templating._tokenize_conversation_slow(
            small,
            dataclasses.replace(
                conv, messages=(conv.messages[0], *_last_turns(small, conv, n, extra))
            ),
            templating.Truncation(10**6),
            formats.SkipCounter(),
        )
        if extra == 0:
            assert t.tokens.tolist() == ref.tokens.tolist()
            assert t.loss_mask.tolist() == ref.loss_mask.tolist()
        else:
            assert len(ref.tokens) > 320
    total, kept_tokens = skips.assistant_tokens
    assert 0 < kept_tokens < total and "assistant tokens kept as targets" in skips.summary()


def test_therapist_first_short_session_matches_full_render(small):
    conv = _session(5)
    t = templating.tokenize_conversation(
        small, conv, templating.Truncation(4096), formats.SkipCounter()
    )
    ref = templating._tokenize_conversation_slow(
        small, conv, templating.Truncation(4096), formats.SkipCounter()
    )
    assert (
        t.tokens.tolist() == ref.tokens.tolist() and t.loss_mask.tolist() == ref.loss_mask.tolist()
    )
    turns = templating._split_turns(small, conv)
    assert turns.roles[0] == "assistant" and turns.masks[0].any()  # the opening is a target
    opening = len(turns.head) + len(turns.ids[0])
    assert t.loss_mask[len(turns.head) : opening].sum() == turns.masks[0].sum()


def test_windows_cover_every_assistant_turn_once(small):
    conv = _session(600)
    trunc = templating.Truncation(256, windows=True)
    skips = formats.SkipCounter()
    t0 = time_start = __import__("time").perf_counter()
    windows = templating.tokenize_session(small, conv, trunc, skips, index=7)
    assert __import__("time").perf_counter() - time_start < 1.0
    del t0
    assert len(windows) > 10 and all(len(w.tokens) <= 256 for w in windows)
    assert all(w.index == 7 for w in windows)
    full = templating.tokenize_session(
        small, conv, templating.Truncation(10**6), formats.SkipCounter()
    )[0]
    # Every target token of the whole session is a target in exactly one window.
    assert sum(int(w.loss_mask.sum()) for w in windows) == int(full.loss_mask.sum())
    assert skips.assistant_tokens[0] == skips.assistant_tokens[1] == int(full.loss_mask.sum())
    # Each window starts with the system header, then a turn header; windows overlap (context).
    turns = templating._split_turns(small, conv)
    head = turns.head
    for w in windows:
        assert w.tokens[: len(head)].tolist() == head.tolist()
        assert w.tokens[len(head)] == turns.ids[0][0]  # a turn's start-of-header token
    assert sum(len(w.tokens) for w in windows) > len(full.tokens)
    # Labels of targets travel as token spans.
    spans = [s for w in windows for s in w.labels]
    assert {lab for _, _, lab in spans} == {f"s{k}" for k in range(0, 600, 2)}
    for w in windows:
        for a, b, _ in w.labels:
            assert w.loss_mask[a:b].any()
    assert skips.events["conversation windows"] == len(windows)


def test_windows_cut_one_turn_longer_than_a_window(small):
    conv = _conv(("user", "Hi."), ("assistant", LONG), ("user", "Ok."), ("assistant", "Good."))
    skips = formats.SkipCounter()
    windows = templating.tokenize_session(
        small, conv, templating.Truncation(40, windows=True), skips
    )
    assert all(len(w.tokens) <= 40 for w in windows) and len(windows) == 2
    assert skips.events["conversation: cut a turn longer than a window"] == 1
    total, kept = skips.assistant_tokens
    assert kept < total and all(w.loss_mask.sum() > 0 for w in windows)


def test_template_not_turn_by_turn_falls_back_and_says_so():
    """A template that numbers the turns is not a prefix plus one piece per turn: the slow path
    renders each candidate, windows are not available (counted), an assistant opening with no
    system message is context only (counted)."""
    tok = tk.sample_tokenizer()
    header, gen = "' + message['role'] + '<|end_header_id|>", "'<|start_header_id|>assistant<|end"
    assert header in tok.chat_template and gen in tok.chat_template
    tok.chat_template = tok.chat_template.replace(
        header, "' + message['role'] + loop.index|string + '<|end_header_id|>"
    ).replace(gen, "'<|start_header_id|>assistant' + (messages|length + 1)|string + '<|end")
    ct = templating.ChatTokenizer(tok)
    conv = _conv(
        ("assistant", "Hello, what brings you?"), ("user", "Stress."), ("assistant", "Tell me.")
    )
    assert templating._split_turns(ct, conv) is None
    skips = formats.SkipCounter()
    out = templating.tokenize_session(ct, conv, templating.Truncation(512, windows=True), skips)
    assert len(out) == 1 and out[0].loss_mask.sum() > 0
    assert (
        skips.events["conversation: template not turn by turn, no windows (keep_last_turns)"] == 1
    )
    assert skips.events["conversation: opening assistant turn kept as context only (chat template)"]
    text = tok.decode(out[0].tokens[out[0].loss_mask])
    assert "Tell me." in text and "Hello" not in text
    assert skips.assistant_tokens == [out[0].loss_mask.sum()] * 2
