"""psycho_jax: a JAX/Flax research codebase for counseling language models."""

__version__ = "0.1.0"
