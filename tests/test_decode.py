"""The KV-cache sampler: greedy parity with transformers' generate, sampling filters, stop tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from psycho_jax.core import decode, hf, sharding  # noqa: E402
from psycho_jax.core.model import Llama, LlamaConfig  # noqa: E402
from psycho_jax.data.formats import Message  # noqa: E402
from psycho_jax.data.tokenizer import sample_tokenizer  # noqa: E402

PAD = 0
N_NEW = 12


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random tiny transformers Llama (random norms too) saved with save_pretrained."""
    config = transformers.LlamaConfig(
        vocab_size=311,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Large enough weights that greedy continuations differ between prompts and steps.
            p.copy_(torch.randn_like(p) * (0.2 if "norm" in name else 0.15) + ("norm" in name))
    path = tmp_path_factory.mktemp("hf_llama")
    model.eval().save_pretrained(path)
    return path


def _prompts():
    rng = np.random.default_rng(0)
    lengths = [7, 3, 11]
    t = max(lengths)
    tokens = np.full((len(lengths), t), PAD, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for i, n in enumerate(lengths):
        tokens[i, t - n :] = rng.integers(1, 311, n)
        mask[i, t - n :] = 1
    return tokens, mask


def _hf_generate(path, tokens, mask, stop):
    model = transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(mask),
            do_sample=False,
            max_new_tokens=N_NEW,
            eos_token_id=stop,
            pad_token_id=PAD,
        )
    new = out[:, tokens.shape[1] :].numpy()
    return np.pad(new, ((0, 0), (0, N_NEW - new.shape[1])), constant_values=PAD)


@pytest.fixture(scope="module")
def stop_and_reference(hf_dir):
    """A stop token that greedy decoding of row 0 meets mid-way, and transformers' output with it."""
    tokens, mask = _prompts()
    free = _hf_generate(hf_dir, tokens, mask, stop=None)
    stop = int(free[0, 4])
    assert stop not in free[0, :4]
    return stop, _hf_generate(hf_dir, tokens, mask, stop=[stop])


@pytest.mark.parametrize(
    "mesh_shape, scan", [((1, 1, 1), False), ((1, 8, 1), True), ((2, 2, 2), False)]
)
def test_greedy_equals_transformers_generate(hf_dir, stop_and_reference, mesh_shape, scan):
    stop, expected = stop_and_reference
    mesh = sharding.make_mesh(mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
    model = hf.load_llama(hf_dir, mesh=mesh, scan_layers=scan)
    sampler = decode.Sampler(model, mesh=mesh, stop_ids=[stop], bucket=8)
    sampler.pad_id = PAD
    tokens, mask = _prompts()
    out = sampler.generate(tokens, mask, decode.Sampling(max_new_tokens=N_NEW))
    np.testing.assert_array_equal(out.tokens, expected)
    # Row 0 stops at step 5 (the stop token counted); padding follows and nothing leaks after it.
    assert out.lengths[0] == 5 and out.finished[0]
    assert (out.tokens[0, 5:] == PAD).all()
    for i in range(3):
        if not out.finished[i]:
            assert out.lengths[i] == N_NEW


def test_a_row_does_not_depend_on_its_batch(hf_dir):
    """Left padding, batch padding and other rows' stops never change a row's reply."""
    model = hf.load_llama(hf_dir)
    sampler = decode.Sampler(model, stop_ids=[5], bucket=8)
    tokens, mask = _prompts()
    batch = sampler.generate(tokens, mask, decode.Sampling(max_new_tokens=N_NEW))
    for i in range(tokens.shape[0]):
        n = int(mask[i].sum())
        alone = sampler.generate(
            tokens[i : i + 1, -n:], mask[i : i + 1, -n:], decode.Sampling(max_new_tokens=N_NEW)
        )
        np.testing.assert_array_equal(alone.tokens[0], batch.tokens[i])


def _allowed(logits, temperature, top_k, top_p):
    """The tokens HF's warpers allow, in float64 NumPy: temperature, top-k, then top-p."""
    z = logits.astype(np.float64) / temperature
    order = np.argsort(-z)
    keep = np.zeros_like(z, bool)
    k = top_k or z.size
    cand = order[:k]
    p = np.exp(z[cand] - z[cand].max())
    p /= p.sum()
    before = np.cumsum(p) - p
    keep[cand[before < top_p]] = True
    return keep


@pytest.mark.parametrize("top_k, top_p", [(5, 1.0), (0, 0.7), (20, 0.5), (0, 0.05)])
def test_sampled_tokens_obey_top_k_and_top_p(top_k, top_p):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 64)).astype(np.float32) * 2
    draws = 2000
    batch = jnp.asarray(np.repeat(logits, draws, axis=0))
    fn = jax.jit(  # the batch an argument: as a closed-over constant XLA would fold the sort
        lambda batch, key: decode.sample_token(
            batch,
            key,
            jnp.float32(0.8),
            jnp.float32(top_p),
            greedy=False,
            top_k=top_k,
            use_top_p=top_p < 1,
        )
    )
    tokens = np.asarray(fn(batch, jax.random.key(0))).reshape(4, draws)
    for row in range(4):
        allowed = _allowed(logits[row], 0.8, top_k, top_p)
        seen = np.unique(tokens[row])
        assert allowed[seen].all(), f"row {row}: sampled {seen[~allowed[seen]]} outside the set"
        # The distribution inside the set is the renormalised softmax (loose: 2000 draws).
        z = logits[row].astype(np.float64) / 0.8
        p = np.where(allowed, np.exp(z - z.max()), 0.0)
        p /= p.sum()
        freq = np.bincount(tokens[row], minlength=64) / draws
        assert np.abs(freq - p).max() < 0.04


def test_temperature_zero_is_argmax_and_sampling_is_seeded():
    logits = jnp.asarray(np.random.default_rng(2).normal(size=(3, 50)), jnp.float32)
    greedy = decode.sample_token(
        logits, jax.random.key(0), 1.0, 1.0, greedy=True, top_k=0, use_top_p=False
    )
    np.testing.assert_array_equal(greedy, np.argmax(logits, axis=-1))
    a, b, c = (
        decode.sample_token(
            logits, jax.random.key(s), 1.0, 1.0, greedy=False, top_k=0, use_top_p=False
        )  # fmt: skip
        for s in (0, 0, 1)
    )
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="top_p"):
        decode.Sampling(top_p=0.0)


@pytest.fixture(scope="module")
def chat_sampler():
    tok = sample_tokenizer()
    cfg = LlamaConfig.tiny(vocab_size=len(tok))
    return decode.Sampler(Llama(cfg, rngs=nnx.Rngs(0)), tok)


def test_reply_text_keeps_input_order_and_stream_matches_generate(chat_sampler):
    s = chat_sampler
    tok = s.tokenizer
    assert tok.convert_tokens_to_ids("<|eot_id|>") in s.stop_ids
    convs = [
        [Message("user", "I have been feeling low since my exams.")],
        [Message("user", "Hi")],
        [Message("system", "Be kind."), Message("user", "My sister and I argue every day now.")],
    ]
    sampling = decode.Sampling(max_new_tokens=10)
    replies = s.reply(convs, sampling, batch_size=2)
    for conv, r in zip(convs, replies, strict=True):
        ids = s.encode_prompt(conv)
        streamed = list(s.stream(ids, sampling))
        assert r.text == tok.decode(streamed, skip_special_tokens=True)
        assert r.num_tokens == len(streamed) + int(r.finished)
        assert "<|" not in r.text


def test_forced_stop_token_ends_every_row(chat_sampler):
    """With the stop token made the only choice, every reply is empty and finished at step one."""
    s = chat_sampler
    eot = tok_id = s.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    model = nnx.merge(s.graphdef, s.state)
    bias = jnp.full((model.config.vocab_size,), -1e4).at[tok_id].set(0.0)
    model.lm_head[...] = model.lm_head[...] * 0 + bias[None, :]
    forced = decode.Sampler(model, s.tokenizer)
    replies = forced.reply(
        [[Message("user", "hello")]] * 3, decode.Sampling(temperature=1.0, max_new_tokens=8)
    )
    assert all(r.text == "" and r.finished and r.num_tokens == 1 for r in replies)
    assert eot in forced.stop_ids


def test_rejects_right_padding(chat_sampler):
    with pytest.raises(ValueError, match="left-padded"):
        chat_sampler.generate(np.ones((1, 4)), np.array([[1, 1, 0, 0]]), decode.Sampling())
