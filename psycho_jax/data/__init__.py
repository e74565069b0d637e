"""Counseling data: formats, sources, chat templating, masking, packing.

One batch, from source to loader:

    formats      Conversation / PreferencePair, row parsers with validation, DataError, SkipCounter
    files        rows from local files (JSONL, JSON, Parquet, CSV, directories), HF datasets, TFDS
    sources      source specs: files, hub, TFDS, the embedded sample, CounselChat; mixtures
    counsel_chat CounselChat SFT conversations and weak preference pairs, scrubbed (pii)
    pii          personal information found and replaced: the generic recognisers (phonenumbers,
                 Presidio) in pii_recognizers, the counseling-specific cues (sign-offs,
                 credentials, crisis lines) in pii_cues
    templating   chat template -> token ids, assistant / reply loss masks, truncation policies
    tokenizer    tokenizers: the shipped sample tokenizer, Llama 3's, Hugging Face directories
    encoder      exact, cached text -> ids for the loader's throughput
    batching     SFT packing or padding, [B, 2, T] preference batches (the batch format is there)
    loader       grain loader: seeded shuffling, epochs, per-host shards, resumable state
    audit        `python -m psycho_jax.data.audit`: what is in a dataset before training on it
"""
