"""Test set-up: 8 fake CPU devices and an offline Hugging Face hub, before JAX starts."""

import os
import pathlib

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# libtpu (the TPU compiler of tests/test_tpu_compile.py), when installed, loads without querying
# cloud metadata and without its exclusive lock (other JAX processes on the host may hold it).
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# The tests run on (fake) CPU devices: with libtpu installed (the test extra brings it), JAX would
# otherwise try to start a TPU backend first. Compiling for a TPU topology works all the same.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache/psycho_jax_xla")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """`../shared` beside the project; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (development data is not part of a fresh clone)")
    return SHARED


@pytest.fixture(scope="session")
def llama3_tokenizer_model(shared_dir) -> pathlib.Path:
    path = shared_dir / "assets" / "llama3" / "tokenizer.model"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def counsel_chat_csv(shared_dir) -> pathlib.Path:
    path = shared_dir / "data" / "counsel-chat" / "counsel_chat.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
