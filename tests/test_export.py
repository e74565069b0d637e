"""Export of trained stages to Hugging Face: transformers gives the same logits and rewards."""

import json
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from psycho_jax.core.model import Llama, RewardModel  # noqa: E402
from psycho_jax.data import shipped  # noqa: E402
from psycho_jax.export import export  # noqa: E402
from psycho_jax.train import checkpoint  # noqa: E402
from psycho_jax.train import loop as train  # noqa: E402
from tests import helpers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# float32 on both sides: differences are summation order only. Never loosen this to pass.
ATOL = 1e-4
CHAT = [
    {"role": "system", "content": "You are a supportive counselor."},
    {"role": "user", "content": "I feel anxious before every exam."},
    {"role": "assistant", "content": "That sounds hard. What goes through your mind then?"},
]


def load_config(task, **overrides):
    """The tests' small shape (tests/helpers.py), with evaluation over the whole eval split."""
    return helpers.load_config(task, eval_batches=8, **overrides)


TEXTS = [
    "I have trouble sleeping since my father passed away.",
    "Work is fine.",
    "My partner and I argue about money every week and I don't know how to stop it.",
]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A 2-step SFT stage (checkpoints at steps 1 and 2) and reward stages from it."""
    root = tmp_path_factory.mktemp("stages")
    train.train_and_evaluate(load_config("sft", num_steps=2, checkpoint_every=1), root / "sft")
    # The reward statistics pass scores every training reply: 32 pairs keep it short.
    pairs = root / "pairs.jsonl"
    rows = shipped.load_sample("preference_train")[:32]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm = {}
    for head in (True, False):
        c = load_config(
            "reward",
            num_steps=2,
            init_from=str(root / "sft"),
            reward__principle_head=head,
            data__train=str(pairs),
            data__eval=str(pairs),
        )
        rm[head] = (root / f"rm_{head}", train.train_and_evaluate(c, root / f"rm_{head}"))
    return root, rm


@pytest.fixture(scope="module")
def tokenizer(stages):
    return transformers.AutoTokenizer.from_pretrained(stages[0] / "sft" / "tokenizer")


def _right_padded(tokenizer, left_pad_row=False):
    rows = [tokenizer(t, add_special_tokens=True)["input_ids"] for t in TEXTS]
    n = max(map(len, rows))
    toks = np.full((len(rows), n), tokenizer.pad_token_id, np.int64)
    mask = np.zeros_like(toks)
    for i, r in enumerate(rows):
        if left_pad_row and i == 1:
            toks[i, n - len(r) :], mask[i, n - len(r) :] = r, 1
        else:
            toks[i, : len(r)], mask[i, : len(r)] = r, 1
    return toks, mask


def test_policy_logits_match_transformers(stages, tokenizer, tmp_path):
    sft = stages[0] / "sft"
    out = export(sft, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["pad_token_id"] == tokenizer.pad_token_id
    assert config["bos_token_id"] == tokenizer.bos_token_id
    assert config["eos_token_id"] == tokenizer.eos_token_id
    model = checkpoint.load_model(sft, dtype="float32")
    assert isinstance(model, Llama)
    tm = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    toks, mask = _right_padded(tokenizer, left_pad_row=True)
    with torch.no_grad():
        ref = tm(torch.tensor(toks), attention_mask=torch.tensor(mask)).logits.numpy()
    ours, _ = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(ours)[real], ref[real], atol=ATOL, rtol=0)

    # The stage's tokenizer, chat template included, comes back from the export.
    back = transformers.AutoTokenizer.from_pretrained(out)
    assert back.apply_chat_template(CHAT, tokenize=False) == tokenizer.apply_chat_template(
        CHAT, tokenize=False
    )
    ids = back.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert ids == tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    assert back.decode(ids) == tokenizer.apply_chat_template(CHAT, tokenize=False)


def test_earlier_step_and_bfloat16(stages, tmp_path):
    sft = stages[0] / "sft"
    out = export(sft / "checkpoints" / "1", tmp_path / "hf", dtype="bfloat16")
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    step1 = checkpoint.load_model(sft, step=1)
    back = checkpoint.load_model(out)
    q = np.asarray(step1.model.layers.q_proj[...])
    np.testing.assert_array_equal(
        np.asarray(back.model.layers.q_proj[...], np.float32),
        np.asarray(jnp.asarray(q, jnp.bfloat16), np.float32),
    )
    assert not np.array_equal(q, np.asarray(checkpoint.load_model(sft).model.layers.q_proj[...]))


@pytest.mark.parametrize("principle_head", [True, False])
def test_reward_model_matches_sequence_classification(stages, tokenizer, tmp_path, principle_head):
    workdir, result = stages[1][principle_head]
    out = export(workdir, tmp_path / "hf")
    model = checkpoint.load_model(workdir, dtype="float32")
    assert isinstance(model, RewardModel)
    assert (model.num_labels > 1) == principle_head
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["num_labels"] == model.num_labels
    assert result["reward_std"] > 0
    np.testing.assert_allclose(config["mean"], result["reward_mean"], rtol=1e-6)
    np.testing.assert_allclose(config["std"], result["reward_std"], rtol=1e-6)

    tm = transformers.LlamaForSequenceClassification.from_pretrained(
        out, dtype=torch.float32
    ).eval()
    assert tm.config.pad_token_id == tokenizer.pad_token_id
    toks, mask = _right_padded(tokenizer)
    with torch.no_grad():
        ref = tm(torch.tensor(toks), attention_mask=torch.tensor(mask)).logits.numpy()
    assert ref.shape == (len(TEXTS), model.num_labels)
    ours = model(jnp.asarray(toks), attention_mask=jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(ours), ref, atol=ATOL, rtol=0)
    normalized = (ref - config["mean"]) / config["std"]
    np.testing.assert_allclose(np.asarray(model.normalize(ours)), normalized, atol=ATOL)


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "psycho_jax.export", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_exports_and_names_bad_paths(stages, tmp_path):
    root = stages[0]
    done = _cli(f"--checkpoint={root / 'rm_True'}", f"--out={tmp_path / 'hf'}", "--step=2")
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert (tmp_path / "hf" / "tokenizer.json").is_file()

    missing = _cli(f"--checkpoint={tmp_path / 'nope'}", f"--out={tmp_path / 'x'}")
    assert missing.returncode == 1
    assert f"{tmp_path / 'nope'}: no such directory" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize(
    "where,step,message",
    [
        ("nope", None, "nope: no such directory"),
        ("empty", None, "empty: neither a stage workdir"),
        ("sft", 7, r"sft/checkpoints/7: no such checkpoint \(complete steps: \[1, 2\]\)"),
    ],
)
def test_bad_paths_are_named(stages, tmp_path, where, step, message):
    (tmp_path / "empty").mkdir()
    path = stages[0] / where if where == "sft" else tmp_path / where
    with pytest.raises(FileNotFoundError, match=message):
        export(path, tmp_path / "out", step=step)
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_a_previous_export(stages, tmp_path):
    root = stages[0]
    export(root / "rm_True", tmp_path / "hf")
    with pytest.raises(FileExistsError, match="hf is not empty"):
        export(root / "sft", tmp_path / "hf")
    export(root / "sft", tmp_path / "hf", overwrite=True)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "mean" not in config
