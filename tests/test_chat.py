"""The terminal chat: streamed replies, the context budget, the loop's commands and the CLI."""

import io
import os
import pathlib
import subprocess
import sys

import pytest
from flax import nnx

from psycho_jax import chat
from psycho_jax.core import decode, hf
from psycho_jax.core.model import Llama, LlamaConfig
from psycho_jax.data.formats import Message
from psycho_jax.data.tokenizer import sample_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
GREEDY = decode.Sampling(temperature=0.0, max_new_tokens=12)
SYSTEM = "Be kind."


@pytest.fixture(scope="module")
def sampler():
    tok = sample_tokenizer()
    return decode.Sampler(Llama(LlamaConfig.tiny(vocab_size=len(tok)), rngs=nnx.Rngs(0)), tok)


def _session(sampler, **kw):
    return chat.ChatSession(sampler, kw.pop("sampling", GREEDY), system=SYSTEM, **kw)


@pytest.mark.slow
def test_streamed_reply_is_the_history_and_the_greedy_reply(sampler):
    session = _session(sampler)
    conversation = [Message("system", SYSTEM)]
    for text in ("I have not slept well since the move.", "It is worse on Sundays."):
        conversation.append(Message("user", text))
        want = sampler.reply([conversation], GREEDY)[0].text
        pieces = list(session.respond(text))
        assert len(pieces) > 1  # streamed, not one piece at the end
        assert "".join(pieces) == want
        assert session.history[-1] == Message("assistant", want)
        conversation.append(Message("assistant", want))
    assert session._messages() == conversation and session.dropped == 0
    session.reset()
    assert session.history == [] and session.dropped == 0


def test_oldest_exchanges_are_dropped_to_fit_and_the_system_prompt_kept(sampler):
    turns = [
        Message("user", "My sister and I argue every day now."),
        Message("assistant", "That sounds exhausting. What do the arguments tend to be about?"),
        Message("user", "Mostly chores, but it feels bigger than that."),
        Message("assistant", "Bigger in what way?"),
        Message("user", "Like she does not respect me."),
    ]
    system = [Message("system", SYSTEM)]
    fits = len(sampler.encode_prompt(system + turns[2:]))
    assert len(sampler.encode_prompt(system + turns)) > fits
    session = _session(sampler, max_context=fits + GREEDY.max_new_tokens)
    session.history = list(turns)
    assert session.prompt_ids() == sampler.encode_prompt(system + turns[2:])
    assert session.history == turns[2:] and session.dropped == 2
    assert session._messages()[0] == system[0]

    # Through respond: the pair is dropped before sampling, the reply appended after it.
    session = _session(sampler, max_context=fits + GREEDY.max_new_tokens)
    session.history = list(turns[:4])
    reply = "".join(session.respond(turns[4].content))
    assert session.history == [*turns[2:], Message("assistant", reply)]
    assert session.dropped == 2


def test_message_too_long_for_the_context_is_refused_and_not_kept(sampler):
    session = _session(sampler, max_context=GREEDY.max_new_tokens + 40)
    long = "I keep going over the same worries again and again at night. " * 20
    with pytest.raises(ValueError, match="at most 40 fit"):
        list(session.respond(long))
    assert all(m.content != long for m in session.history)
    assert session.history == []
    # The session still works afterwards.
    reply = "".join(session.respond("Hi"))
    assert session.history == [Message("user", "Hi"), Message("assistant", reply)]
    with pytest.raises(ValueError, match="no room for a prompt"):
        _session(sampler, max_context=GREEDY.max_new_tokens)


def test_refused_message_keeps_the_earlier_conversation(sampler):
    session = _session(sampler, max_context=GREEDY.max_new_tokens + 60)
    earlier = [Message("user", "Hello there"), Message("assistant", "Hi, how are you?")]
    session.history = list(earlier)
    with pytest.raises(ValueError, match="at most 60 fit"):
        list(session.respond("word " * 100))
    assert session.history == earlier and session.dropped == 0


def test_run_prints_the_notice_and_obeys_reset_and_quit(sampler):
    session = _session(sampler)
    out = io.StringIO()
    lines = ["Hello", "/reset", "  ", "I feel alone.", "/quit", "never read"]
    chat.run(session, iter(lines), out)
    text = out.getvalue()
    notice = text[: text.index("counselor:")]
    assert "988" in notice and "findahelpline" in notice and "RESEARCH model" in notice
    assert text.count("counselor:") == 2 and "(conversation cleared)" in text
    # /reset forgot the first exchange; /quit stopped before the last line.
    assert [m.role for m in session.history] == ["user", "assistant"]
    assert session.history[0].content == "I feel alone."
    assert text.rstrip().endswith(session.history[1].content.rstrip())


def test_run_reports_a_refused_message_and_dropped_turns(sampler):
    budget = len(sampler.encode_prompt([Message("system", SYSTEM), Message("user", "Hi")]))
    session = _session(sampler, max_context=budget + GREEDY.max_new_tokens + 24)
    out = io.StringIO()
    chat.run(session, iter(["Hi", "Hello again", "word " * 200]), out)
    text = out.getvalue()
    assert "(message not sent:" in text
    assert "messages no longer fit and were dropped" in text
    assert text.count("counselor:") == 3


def test_find_tokenizer(tmp_path):
    stage, hf_dir = tmp_path / "stage", tmp_path / "hf"
    (stage / "tokenizer").mkdir(parents=True)
    hf_dir.mkdir()
    (hf_dir / "tokenizer.json").write_text("{}")
    assert chat.find_tokenizer(stage) == str(stage / "tokenizer")
    assert chat.find_tokenizer(hf_dir) == str(hf_dir)
    assert chat.find_tokenizer(tmp_path, "sample") == "sample"
    with pytest.raises(FileNotFoundError, match="pass --tokenizer"):
        chat.find_tokenizer(tmp_path)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    tok = sample_tokenizer()
    model = Llama(LlamaConfig.tiny(vocab_size=len(tok)), rngs=nnx.Rngs(0))
    hf.save_llama(model, tmp_path, tokenizer=tok)
    tok.save_pretrained(tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "psycho_jax.chat",
            f"--checkpoint={tmp_path}",
            "--max_new_tokens=8",
            "--temperature=0",
        ],
        input="I can't sleep since the move.\n/reset\nHello\n/quit\nnot read\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "988" in out.stdout and "findahelpline" in out.stdout
    assert out.stdout.count("counselor:") == 2 and "(conversation cleared)" in out.stdout
    assert any(line.startswith("counselor:") for line in out.stdout.splitlines())


def test_crisis_message_later_in_the_chat_shows_the_resources(sampler):
    session = _session(sampler)
    out = io.StringIO()
    chat.run(session, iter(["Work is busy.", "I want to end my life.", "I'm not suicidal."]), out)
    text = out.getvalue()
    after_notice = text[text.index("counselor:") :]
    assert after_notice.count("may be in crisis") == 1  # the second message only
    second = after_notice.split("counselor:")[2]
    assert "may be in crisis" in second and "988" in second
    assert session.history[-1].role == "assistant"  # the model's reply is still given


def test_crisis_check_is_shared_with_the_safety_slice():
    from psycho_jax.evaluation import safety, scoring

    for msg in ("I want to end my life", "I keep cutting myself", "I've been thinking of suicide",
                "He hits me when he drinks"):  # fmt: skip
        assert safety.crisis_rules(msg), msg
    for msg in ("My exams went badly", "I'm not suicidal, just tired", "Cut the cake for me"):
        assert not safety.crisis_rules(msg), msg
    crisis = scoring.load_prompts("sample:crisis")
    assert all(p.crisis for p in crisis)  # topics or text
    prompts = scoring.load_prompts("sample:eval_prompts")
    crisis_topics = {"self_harm", "suicidal_thoughts", "abuse"}
    assert {p.id for p in prompts if p.crisis} == {
        p.id for p in prompts if p.topic in crisis_topics
    }
    by_text = [p for p in prompts if safety.crisis_rules(p.messages[-1].content)]
    assert by_text and all(p.topic in crisis_topics for p in by_text)
