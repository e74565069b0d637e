"""Real-shaped counseling data end to end: therapist-first transcripts with odd speaker names and
per-turn labels, long sessions cut into windows, eval splits of any size (never the sample)."""

import functools
import json
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from psycho_jax.core import sharding
from psycho_jax.core.model import Llama, LlamaConfig
from psycho_jax.data import training as data_training
from psycho_jax.data.tokenizer import sample_tokenizer
from psycho_jax.train import loop as train
from psycho_jax.train import step as step_lib
from psycho_jax.train import tasks
from tests.helpers import load_config, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRATEGIES = ("Question", "Reflection of feelings", "Affirmation")


def _config(task="sft", **overrides):
    """tests/test_train.py's tiny config, with eval every 2 steps over the whole eval split."""
    return load_config(task, num_steps=2, eval_every=2, eval_batches=0, **overrides)


def write_sessions(path: pathlib.Path, n: int, turns: int = 7, long_every: int = 0) -> None:
    """ESConv/MI-shaped sessions: the Supporter (or Therapist) opens, Seeker/Client answers,
    sometimes twice in a row, the seeker has the last word; strategies on supporter turns."""
    rows = []
    for i in range(n):
        helper, person = ("Supporter", "Seeker") if i % 2 else ("Therapist", "Client")
        k = turns if not (long_every and i % long_every == 0) else 120
        msgs = []
        for t in range(k):
            if t % 2 == 0:
                msgs.append(
                    {
                        "speaker": helper,
                        "content": f"Session {i}, turn {t}: what feels hardest right now?",
                        "label": STRATEGIES[(i + t) % 3],
                    }
                )
            else:
                msgs.append({"speaker": person, "content": f"I can't sleep before exams ({t})."})
                if t == 3:
                    msgs.append({"speaker": person, "content": "And my family worries."})
        msgs.append({"speaker": person, "content": "Thanks, goodbye."})
        rows.append({"id": f"s{i}", "messages": msgs})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.slow
def test_sft_on_transcripts_with_windows_labels_and_an_eval_split_of_3(tmp_path, caplog):
    write_sessions(tmp_path / "train.jsonl", 12, long_every=4)
    write_sessions(tmp_path / "eval.jsonl", 3)
    c = _config(
        data__train=str(tmp_path / "train.jsonl"),
        data__eval=str(tmp_path / "eval.jsonl"),
        data__merge_consecutive=True,
        data__windows=True,
        data__label_prefix=True,
        data__max_len=128,
        eval_batch_size=16,
    )
    tok = sample_tokenizer()
    loader = data_training.make_loader(
        settings(c), tok, "train", "sft", process_index=0, process_count=1
    )
    assert len(loader.examples) > 12  # the 120-turn sessions became several windows
    assert loader.label_vocab == tuple(sorted(STRATEGIES))
    batch = next(iter(loader))
    assert batch["turn_label"].shape == batch["tokens"].shape
    assert ((batch["turn_label"] > 0) <= (batch["loss_mask"] > 0)).all()
    assert (batch["turn_label"] > 0).any()
    text = tok.decode(loader.examples[0].tokens)
    assert "[Question] " in text or "[Affirmation] " in text or "[Reflection of feelings] " in text
    evaluation = data_training.make_loader(settings(c), tok, "eval", "sft", epochs=1)
    assert {e.index for e in evaluation.examples} == {0, 1, 2}
    assert evaluation.num_steps == 1  # 3 sessions' windows, batch of 16: padded, not dropped

    final = train.train_and_evaluate(c, tmp_path / "w")
    assert final["eval/examples"] == len(evaluation.examples) and np.isfinite(final["eval/loss"])


def test_eval_batches_padded_weighted_like_one_batch(tmp_path):
    """11 pairs in batches of 8 (8 + 3 and 5 empty rows) give the metrics of one batch of 16."""
    rows = [
        {
            "prompt": f"I feel alone since the move ({i}).",
            "chosen": "That sounds lonely. What do you miss most?",
            "rejected": "Make new friends." + " Really." * (i % 4),
        }
        for i in range(11)
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tok = sample_tokenizer()
    model = Llama(
        LlamaConfig.tiny(vocab_size=len(tok), dim=64, head_dim=16, ffn_dim=128), rngs=nnx.Rngs(0)
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    metrics = {}
    for eval_batch_size in (8, 16):
        c = _config(
            "dpo",
            data__train=str(tmp_path / "pairs.jsonl"),
            data__eval=str(tmp_path / "pairs.jsonl"),
            eval_batch_size=eval_batch_size,
            dpo__loss_type="simpo",
        )
        task = tasks.make_task(settings(c))
        loader = data_training.make_loader(settings(c), tok, "eval", "dpo", epochs=1)
        assert loader.num_steps == (2 if eval_batch_size == 8 else 1)
        eval_fn = jax.jit(functools.partial(step_lib.eval_step, graphdef=graphdef, task=task))
        state = step_lib.TrainState(step=0, params=params, rest=rest, opt_state=None, skipped=0)
        mesh = sharding.make_mesh((1, -1, 1))
        with jax.set_mesh(mesh):
            metrics[eval_batch_size] = train.evaluate(eval_fn, state, None, iter(loader), mesh)
    a, b = metrics[8], metrics[16]
    assert a["eval/examples"] == b["eval/examples"] == 11
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_sample_eval_never_stands_in_for_user_data(tmp_path, caplog):
    write_sessions(tmp_path / "train.jsonl", 8)
    c = _config(data__train=str(tmp_path / "train.jsonl"), data__merge_consecutive=True)
    assert c.data.eval.startswith("sample:")
    assert settings(c).data.held_out == ""
    with caplog.at_level("WARNING"):
        final = train.train_and_evaluate(c, tmp_path / "w")
    assert not any(k.startswith("eval/") for k in final)
    msgs = [r.getMessage() for r in caplog.records if "no evaluation" in r.getMessage()]
    assert len(msgs) == 1 and "embedded sample" in msgs[0]


def test_principle_head_only_with_rated_pairs(tmp_path, caplog):
    rows = [
        {"prompt": f"I feel alone ({i}).", "chosen": "That sounds lonely.", "rejected": "Go out."}
        for i in range(10)
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tok = sample_tokenizer()
    c = _config("reward", data__train=str(tmp_path / "pairs.jsonl"))
    assert c.reward.principle_head
    with caplog.at_level("WARNING"):
        off = train.principle_head_if_rated(settings(c), tok)
    assert not off.reward.principle_head and c.reward.principle_head  # the caller's is unchanged
    assert tasks.make_task(off).num_labels == 1
    assert any("no per-principle ratings" in r.getMessage() for r in caplog.records)
    from psycho_jax.data.formats import PRINCIPLES

    for r in rows:
        r.update({f"{s}_{p}_rating": 4 if s == "chosen" else 2 for s in ("chosen", "rejected")
                  for p in PRINCIPLES})  # fmt: skip
        r["prompt"] += " (rated)"
    (tmp_path / "rated.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    rated = _config("reward", data__train=str(tmp_path / "rated.jsonl"))
    assert train.principle_head_if_rated(settings(rated), tok).reward.principle_head


@pytest.mark.slow
def test_openrlhf_value_head_normalize_reward_and_token_ids(tmp_path):
    """An OpenRLHF-style reward checkpoint: head `value_head`, `normalize_reward: true`, its own
    pad/bos/eos ids; loads, scores normalised, and saves back runnable by transformers."""
    from safetensors.numpy import load_file, save_file

    from psycho_jax.core import hf
    from psycho_jax.core.model import RewardModel
    from psycho_jax.data.formats import Message
    from psycho_jax.evaluation import scoring

    tok = sample_tokenizer()
    cfg = LlamaConfig.tiny(vocab_size=len(tok), dim=64, head_dim=16, ffn_dim=128)
    rm = RewardModel(cfg, rngs=nnx.Rngs(3))
    src = tmp_path / "openrlhf"
    hf.save_llama(rm, src)
    tensors = load_file(str(src / "model.safetensors"))
    tensors["value_head.weight"] = tensors.pop("score.weight")
    save_file(tensors, str(src / "model.safetensors"))
    config = json.loads((src / "config.json").read_text())
    config.update(value_head_prefix="value_head", normalize_reward=True, mean=1.5, std=2.0,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id)  # fmt: skip
    (src / "config.json").write_text(json.dumps(config))

    loaded = hf.load_llama(src)
    assert isinstance(loaded, RewardModel) and loaded.normalize_reward
    prompts = [(Message("user", "I feel alone."),)] * 2
    replies = ["That sounds lonely.", "Go out more."]
    tokens, mask = _encode(tok, prompts, replies)
    raw = np.asarray(rm(tokens, attention_mask=mask)[:, 0], np.float64)
    scores = scoring.RewardScorer(loaded, tok, max_len=64).score(prompts, replies)
    np.testing.assert_allclose(scores.reward, (raw - 1.5) / 2.0, rtol=1e-4, atol=1e-5)

    out = tmp_path / "saved"
    hf.save_llama(loaded, out)
    saved = json.loads((out / "config.json").read_text())
    assert saved["pad_token_id"] == tok.pad_token_id and saved["eos_token_id"] == tok.eos_token_id
    assert saved["normalize_reward"] is True
    torch = pytest.importorskip("torch")
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    ids = [
        tok.encode("I feel alone.", add_special_tokens=False),
        tok.encode("Hi", add_special_tokens=False),
    ]
    t = max(map(len, ids))
    batch = torch.tensor([x + [tok.pad_token_id] * (t - len(x)) for x in ids])
    assert model(batch, attention_mask=(batch != tok.pad_token_id).long()).logits.shape == (2, 1)


def _encode(tok, prompts, replies):
    """Tokens and mask of prompt + reply as the scorer renders them (right padded)."""
    from psycho_jax.data.templating import ChatTokenizer

    ct = ChatTokenizer(tok)
    rows = [
        ct.encode(ct.render([*(m.as_dict() for m in p), {"role": "assistant", "content": r}]))
        for p, r in zip(prompts, replies)
    ]
    t = max(map(len, rows))
    tokens = np.full((len(rows), t), tok.pad_token_id, np.int32)
    mask = np.zeros((len(rows), t), bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)], mask[i, : len(r)] = r, True
    return tokens, mask


def test_esconv_and_annomi_shapes_load_without_reshaping(tmp_path):
    """ESConv as published (a JSON list, `dialog` turns with `speaker` and an `annotation`
    strategy) and AnnoMI as published (a CSV row per utterance) load as conversations."""
    from psycho_jax.data import formats, sources

    esconv = [
        {
            "emotion_type": "anxiety",
            "problem_type": "job crisis",
            "dialog": [
                {"speaker": "supporter", "annotation": {"strategy": "Question"},
                 "content": "Hi, how are you feeling?"},
                {"speaker": "seeker", "annotation": {}, "content": "Worried about my job."},
                {"speaker": "seeker", "annotation": {}, "content": "Layoffs are coming."},
                {"speaker": "supporter", "annotation": {"strategy": "Reflection of feelings"},
                 "content": "That uncertainty sounds scary."},
                {"speaker": "seeker", "annotation": {}, "content": "Thanks."},
            ],
        }
    ]  # fmt: skip
    (tmp_path / "ESConv.json").write_text(json.dumps(esconv))
    skips = formats.SkipCounter()
    opts = formats.ConversationOptions(merge_consecutive=True)
    (conv,) = sources.load_source(str(tmp_path / "ESConv.json"), skips=skips, options=opts)
    assert [m.role for m in conv.messages] == ["assistant", "user", "assistant"]
    assert [m.label for m in conv.messages] == ["Question", None, "Reflection of feelings"]
    assert skips.events["conversation: dropped trailing user turn(s) with no reply"] == 1

    import pandas as pd

    rows = []
    for t, (quality, n) in enumerate((("high", 7), ("low", 4))):
        for u in range(n):
            who = "therapist" if u % 2 == 0 else "client"
            rows.append({"mi_quality": quality, "transcript_id": t, "utterance_id": u,
                         "interlocutor": who, "utterance_text": f"{who} says {u}",
                         "main_therapist_behaviour": "question" if who == "therapist" else ""})  # fmt: skip
    frame = pd.DataFrame(rows).sample(frac=1, random_state=0)  # utterance order restored by id
    frame.to_csv(tmp_path / "AnnoMI-simple.csv", index=False)
    convs = sources.load_source(str(tmp_path / "AnnoMI-simple.csv"))
    assert len(convs) == 2
    by_id = {c.id: c for c in convs}
    assert [m.content for m in by_id["0"].messages] == [
        f"{'therapist' if u % 2 == 0 else 'client'} says {u}" for u in range(7)
    ]
    assert by_id["1"].messages[-1].role == "assistant"  # the client's last word is trimmed
