"""Export a training stage's model to a Hugging Face directory that transformers loads.

    python -m psycho_jax.export --checkpoint=/tmp/sft --out=/tmp/sft_hf [--step=N] [--dtype=bfloat16]

`--checkpoint` is a stage workdir (its newest complete checkpoint, or `--step`), one of its
`checkpoints/<step>` directories, or a Hugging Face directory (re-saved, e.g. in another dtype). A
policy (SFT, DPO) is written as `LlamaForCausalLM`; a reward model as `LlamaForSequenceClassification`
with `num_labels` outputs and its normalisation statistics as `mean`/`std` in config.json (OpenRLHF's
convention: `(reward - mean) / std`). A LoRA stage is exported merged (W + (alpha / R) * A @ B: a plain
Llama that transformers loads); its adapters alone are in `DIR/adapters` (PEFT's layout). The stage's
tokenizer (`DIR/tokenizer`) is saved alongside and its bos/eos/pad ids go into config.json;
`LlamaForSequenceClassification` needs `pad_token_id` to find the last real token of a right-padded
row.

The model is restored sharded over the local devices and written one tensor at a time; run it as a
single process.
"""

from __future__ import annotations

import pathlib
import re

import jax
from absl import app, flags, logging

from psycho_jax.core import hf, lora, metrics_writer, sharding
from psycho_jax.data.tokenizer import load_tokenizer
from psycho_jax.train import checkpoint as ckpt_lib


def define_flags() -> None:
    """Command-line flags; defined only when run as a program, so importing this module (tests,
    notebooks, other CLIs) never clashes with another module's flags."""
    flags.DEFINE_string("checkpoint", None, "Stage workdir, its checkpoints/<step>, or a HF dir.")
    flags.DEFINE_string("out", None, "Hugging Face directory to write.")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest complete one).")
    flags.DEFINE_enum(
        "dtype",
        None,
        ["float32", "bfloat16", "float16"],
        "Dtype on disk (default: parameter dtype).",
    )
    flags.DEFINE_bool("overwrite", False, "Write into a non-empty --out.")


# Files of a previous export that would otherwise be mixed with the new one.
_STALE = ("model*.safetensors", "model.safetensors.index.json", "config.json")


def _steps(workdir: pathlib.Path) -> list[int]:
    """Complete checkpoint steps (Orbax writes to a temporary name and renames when done)."""
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _resolve(
    checkpoint: pathlib.Path, step: int | None
) -> tuple[pathlib.Path, int | None, pathlib.Path | None]:
    """(path to load, step, tokenizer directory or None), with errors that name the path."""
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint={checkpoint}: no such directory")
    if (checkpoint / "config.json").is_file():  # a Hugging Face directory
        tok = checkpoint if (checkpoint / "tokenizer_config.json").is_file() else None
        return checkpoint, None, tok
    if checkpoint.parent.name == "checkpoints" and re.fullmatch(r"\d+", checkpoint.name):
        named = int(checkpoint.name)
        if step is not None and step != named:
            raise ValueError(f"--checkpoint={checkpoint} is step {named} but --step={step}")
        checkpoint, step = checkpoint.parent.parent, named
    if not ckpt_lib.is_stage_dir(checkpoint):
        raise FileNotFoundError(
            f"--checkpoint={checkpoint}: neither a stage workdir (no checkpoints/) nor a Hugging "
            "Face directory (no config.json)"
        )
    steps = _steps(checkpoint)
    if not steps:
        raise FileNotFoundError(f"{checkpoint}/checkpoints holds no complete checkpoint")
    if step is not None and step not in steps:
        raise FileNotFoundError(
            f"{checkpoint}/checkpoints/{step}: no such checkpoint (complete steps: {steps})"
        )
    tok = checkpoint / "tokenizer"
    return checkpoint, step, tok if tok.is_dir() else None


def export(
    checkpoint: str | pathlib.Path,
    out: str | pathlib.Path,
    step: int | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a stage's model (and tokenizer) to `out` in Hugging Face format.

    Args:
      checkpoint: a stage workdir, one of its `checkpoints/<step>` directories, or a HF directory.
      out: the directory to write; created if missing.
      step: the checkpoint step (default: the newest complete one).
      dtype: tensor dtype on disk, e.g. "bfloat16" (default: the parameter dtype, float32).
      overwrite: allow a non-empty `out` (a previous export's weights and config are replaced).

    Returns:
      `out`, which `transformers.LlamaForCausalLM` (policy) or `LlamaForSequenceClassification`
      (reward model, with `mean`/`std` in config.json) and `AutoTokenizer` load.

    Raises:
      FileNotFoundError: the checkpoint directory, its checkpoints or the step are missing.
      FileExistsError: `out` is not empty and `overwrite` is False.
    """
    path, step, tok_dir = _resolve(pathlib.Path(checkpoint), step)
    out = pathlib.Path(out)
    if out.resolve() == path.resolve():
        raise ValueError(f"--out={out} is the checkpoint directory itself")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--out={out} is not empty (pass overwrite=True / --overwrite)")
        for pattern in _STALE:
            for stale in out.glob(pattern):
                stale.unlink()
    mesh = sharding.make_mesh((1, -1, 1), devices=jax.local_devices())
    model = ckpt_lib.load_model(path, mesh=mesh, step=step)
    if model.config.lora_rank:
        logging.info("%s has LoRA adapters (rank %d): merging them", path, model.config.lora_rank)
        model = lora.merge(model)
    tokenizer = None
    if tok_dir is None:
        logging.warning(
            "%s has no tokenizer: none is saved and config.json gets no pad/bos/eos ids "
            "(LlamaForSequenceClassification then cannot score padded batches)",
            path,
        )
    else:
        tokenizer = load_tokenizer(tok_dir)
    hf.save_llama(model, out, dtype=dtype, tokenizer=tokenizer)
    logging.info("exported %s (step %s) to %s", path, step if step is not None else "latest", out)
    return out


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS.checkpoint or not flags.FLAGS.out:
        raise app.UsageError("--checkpoint and --out are required")
    logging.set_verbosity(logging.INFO)
    metrics_writer.quiet_library_logs()
    try:
        out = export(
            flags.FLAGS.checkpoint,
            flags.FLAGS.out,
            flags.FLAGS.step,
            flags.FLAGS.dtype,
            overwrite=flags.FLAGS.overwrite,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"export: {e}") from None
    print(out)


if __name__ == "__main__":
    define_flags()
    app.run(main)
