"""The notebooks in notebooks/ run top to bottom (nbclient, a fresh kernel) on tiny models, so they
cannot rot: the quickstart's FAST pipeline, plots and chat; the reward-model notebook on random tiny
Hugging Face checkpoints saved here."""

import os
import pathlib

import nbformat
import pytest
from flax import nnx
from nbclient import NotebookClient

from psycho_jax.core import hf
from psycho_jax.core.model import Llama, LlamaConfig, RewardModel
from psycho_jax.data.tokenizer import sample_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, parameters: str, timeout: int = 900) -> nbformat.NotebookNode:
    """Executes notebooks/<name>.ipynb with its `parameters` cell replaced; returns the executed
    notebook (a failing cell raises `nbclient.exceptions.CellExecutionError` with its traceback)."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
    cells[0].source = parameters
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{name} is stored with outputs: clear them before committing"
    )
    # The kernel is a separate process on one CPU device (conftest's 8 fake devices are this
    # process's only), offline, sharing the tests' compilation cache.
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "JAX_COMPILATION_CACHE_DIR": os.environ.get(
            "JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache/psycho_jax_xla")
        ),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
    }
    env.pop("JAX_NUM_CPU_DEVICES", None)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=env)
    return nb


def outputs(nb: nbformat.NotebookNode, kind: str) -> list[str]:
    """Every output of the executed notebook of a MIME type ("text/plain", "image/png", ...) or
    "stream" text, as strings."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream" and out.name == "stdout":
                found.append(out.text)
            elif kind in out.get("data", {}):
                data = out.data[kind]
                found.append(data if isinstance(data, str) else "".join(data))
    return found


@pytest.mark.slow
def test_quickstart(tmp_path):
    workdir = tmp_path / "quickstart"
    nb = run_notebook(
        "quickstart", f"FAST = True\nWORKDIR = {str(workdir)!r}\nREPO_URL = ''\nEXTRAS = ''"
    )
    stdout = "".join(outputs(nb, "stream"))
    # The pipeline ran every stage and printed its summary; the summary cell shows it as a table.
    assert "| metric | value |" in stdout
    for stage in ("sft", "reward", "dpo", "online_dpo"):
        assert (workdir / stage / "final_metrics.json").is_file(), stage
    assert (workdir / "evaluation" / "report.md").is_file()
    tables = "".join(outputs(nb, "text/html"))
    for key in ("sft/eval_loss_end", "reward/eval_accuracy", "online_dpo/heldout_reward_end"):
        assert key in tables, key
    # The training curves and the evaluation's win-rate plot.
    assert len(outputs(nb, "image/png")) >= 2
    # The chat: the notice, then a non-empty streamed reply to each scripted message.
    assert "RESEARCH model" in stdout
    replies = [part.split("\n\n")[0] for part in stdout.split("counselor: ")[1:]]
    assert len(replies) == 2 and all(r.strip() for r in replies), replies


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A random tiny reward model and causal LM in Hugging Face format, with the sample tokenizer."""
    tok = sample_tokenizer()
    cfg = LlamaConfig.tiny(vocab_size=len(tok), max_seq_len=2048)
    out = tmp_path_factory.mktemp("hf")
    hf.save_llama(RewardModel(cfg, rngs=nnx.Rngs(0)), out / "reward", tokenizer=tok)
    hf.save_llama(Llama(cfg, rngs=nnx.Rngs(1)), out / "policy", tokenizer=tok)
    return out / "reward", out / "policy"


@pytest.mark.slow
def test_score_with_reward_model(hf_dirs):
    reward_dir, policy_dir = hf_dirs
    nb = run_notebook(
        "score_with_reward_model",
        f"REWARD_DIR = {str(reward_dir)!r}\nTOKENIZER = ''\nPOLICY_DIR = {str(policy_dir)!r}\n"
        "DTYPE = 'float32'\nNUM_PAIRS = 5\nMAX_LEN = 1024\nMAX_NEW_TOKENS = 16\n"
        "REPO_URL = ''\nEXTRAS = ''",
    )
    stdout = "".join(outputs(nb, "stream"))
    assert "pair accuracy:" in stdout and "over 5 pairs" in stdout
    tables = outputs(nb, "text/html")
    # The crisis pairs' scores, the own replies' scores, and the policy's generated replies.
    assert any("reward(good)" in t and "crisis-0004" in t for t in tables)
    assert any("Breakups happen" in t for t in tables)
    assert any("policy:" in s for s in outputs(nb, "stream"))
    assert sum("<table" in t for t in tables) == 3
