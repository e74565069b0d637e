"""The model core: what runs a Llama on a mesh, knowing nothing of training or of counseling.

    model           Llama / RewardModel (Flax NNX), LlamaConfig (architecture + numerics), presets
    kernels         custom-VJP layer kernels, attention, the output head's fused log-probabilities
    sharding        named-axis rules and mesh helpers (fsdp, tensor, data)
    lora            LoRA adapters over the projections; merge for export
    hf              Hugging Face Llama / reward checkpoints in and out
    decode          KV-cache sampling on a mesh (`Sampler`)
    topology        TPU slice names -> compile-only devices (TPU compiler on a CPU host)
    distributed     multi-host start-up
    metrics_writer  the metrics file every program writes

Imports only `psycho_jax.data` (tokenizers, chat templating) and third-party libraries.
"""
