"""psycho_jax: JAX/Flax Llama training for psychological counseling (SFT, reward models, DPO)."""

import pathlib

import setuptools

setuptools.setup(
    name="psycho_jax",
    version="0.1.0",
    description="Flax NNX Llama 3 training for counseling: SFT, Bradley-Terry reward models, DPO.",
    long_description=pathlib.Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["psycho_jax", "psycho_jax.*"]),
    package_data={"psycho_jax": ["data/sample/*", "assets/sample_tokenizer/*"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.8",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "ml_collections>=1.0",
        "absl-py>=2.0",
        "numpy>=1.26",
        "ml_dtypes>=0.5",
        "transformers>=4.50",
        "tokenizers>=0.21",
        "datasets>=3.0",
        "grain>=0.2.18",
        "regex",
        # Personal information (psycho_jax.data.pii): libphonenumber, Presidio's recognisers, the
        # public suffix list that tldextract ships (read offline).
        "phonenumbers>=8.13",
        "presidio-analyzer>=2.2.350",
        "tldextract>=5.0",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
        "tqdm",
        "pandas>=2.0",
        # Needed at run time by features we use, though nothing here imports them (transformers and
        # pandas do not require them): chat templates (`apply_chat_template`) and Parquet files.
        # tests/test_dependencies.py keeps this list and the imports in step.
        "jinja2>=3.1",
        "pyarrow>=15",
    ],
    extras_require={
        # Reference implementations for the parity tests: never imported by the library.
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "torch==2.13.0",
            "tiktoken>=0.7",
            "trl>=1.0",
            # tests/test_lora.py compares merged adapters with peft's (reference only).
            "peft>=0.13",
            # tests/test_notebooks.py executes notebooks/ in a fresh kernel.
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            # tests/test_data_sources.py builds a local TFDS dataset (the `tfds` extra).
            "tensorflow-datasets>=4.9.8",
            "array-record>=0.8",
            "importlib_resources",
            # tests/test_tpu_compile.py compiles for TPU slices with the TPU compiler (libtpu).
            "jax[tpu]",
        ],
        # Optional sources and loggers, imported lazily with an "install psycho_jax[x]" message.
        # tfds needs importlib_resources (etils[epath]) at run time without requiring it.
        "tfds": ["tensorflow-datasets>=4.9.8", "array-record>=0.8", "importlib_resources"],
        "wandb": ["wandb>=0.17"],
        # Person names from a named-entity model (pii.Scrubber(ner_model=...)); the spaCy
        # pipeline itself is installed apart: `python -m spacy download en_core_web_lg`.
        "ner": ["spacy>=3.7"],
        "tpu": ["jax[tpu]"],
        "cuda": ["jax[cuda12]"],
    },
    entry_points={"console_scripts": ["psycho-jax=psycho_jax.main:run"]},
)
