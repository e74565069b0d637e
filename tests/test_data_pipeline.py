"""Loader: deterministic shuffling, epochs, resumable state, disjoint per-host shards."""

import json

import numpy as np
import pytest

from psycho_jax.data import loader as pipeline
from psycho_jax.data import sources, templating
from psycho_jax.data import tokenizer as tk
from psycho_jax.data.batching import BatchLayout


@pytest.fixture(scope="module")
def ct():
    return templating.ChatTokenizer(tk.sample_tokenizer())


@pytest.fixture(scope="module")
def pairs(ct):
    return templating.tokenize_examples(
        sources.load_source("sample:preference_test")[:90], ct, templating.Truncation(384)
    )


@pytest.fixture(scope="module")
def convs(ct):
    return templating.tokenize_examples(
        sources.load_source("sample:sft_test")[:60], ct, templating.Truncation(512)
    )


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _cfg(pad, **kw):
    return pipeline.LoaderConfig(
        **{"global_batch_size": 8, "seq_len": 512, "pad_id": pad, "seed": 3, **kw}
    )


@pytest.mark.parametrize("kind", ["pairs", "convs"])
def test_resume_mid_epoch_gives_identical_batches(kind, request, ct):
    examples = request.getfixturevalue(kind)
    cfg = _cfg(ct.pad_id, num_epochs=3)
    first = pipeline.Loader(examples, cfg, process_index=0, process_count=1)
    steps = first.num_steps
    mid = steps // 2 + (
        (steps // 2) * 8 % first.units_per_epoch == 0
    )  # inside an epoch, not at its start
    assert first.epoch_of(mid) >= 1  # and after an epoch boundary, so reshuffling is resumed too
    for _ in range(mid):
        next(first)
    state = json.loads(json.dumps(first.get_state()))  # survives a JSON checkpoint
    rest = list(first)
    assert len(rest) == steps - mid
    resumed = pipeline.Loader(examples, cfg, process_index=0, process_count=1)
    resumed.set_state(state)
    assert resumed.step == mid
    again = list(resumed)
    assert len(again) == len(rest) and all(_same(a, b) for a, b in zip(rest, again))
    # Random access agrees with iteration.
    assert _same(rest[0], first.batch(mid))


def test_state_from_other_data_or_config_is_refused(pairs, ct):
    loader = pipeline.Loader(pairs, _cfg(ct.pad_id))
    next(loader)
    state = loader.get_state()
    with pytest.raises(ValueError, match=r"seed: saved 3, now 4"):
        pipeline.Loader(pairs, _cfg(ct.pad_id, seed=4)).set_state(state)
    with pytest.raises(
        ValueError,
        match=r"data: saved '[0-9a-f]+', now '[0-9a-f]+'.*num_examples: saved 90, now 89",
    ):
        pipeline.Loader(pairs[:-1], _cfg(ct.pad_id)).set_state(state)


@pytest.mark.parametrize("kind", ["pairs", "convs"])
@pytest.mark.parametrize("hosts", [2, 4])
def test_host_shards_are_disjoint_and_cover_the_global_batch(kind, hosts, request, ct):
    examples = request.getfixturevalue(kind)
    cfg = _cfg(ct.pad_id, num_epochs=1)
    single = pipeline.Loader(examples, cfg, process_index=0, process_count=1)
    loaders = [
        pipeline.Loader(examples, cfg, process_index=h, process_count=hosts) for h in range(hosts)
    ]
    for step in range(single.num_steps):
        parts = [next(ld) for ld in loaders]
        whole = single.batch(step)
        assert all(p["tokens"].shape[0] == 8 // hosts for p in parts)
        assert _same(whole, {k: np.concatenate([p[k] for p in parts]) for k in whole})
        units = [tuple(u) for u in (single.unit(step * 8 + i) for i in range(8))]
        assert len(set(units)) == 8  # no example twice in a global batch
        if kind == "pairs":
            ids = [set(p["example_index"].tolist()) for p in parts]
            assert set.union(*ids) == set(whole["example_index"].tolist())
            assert sum(map(len, ids)) == 8  # disjoint
    with pytest.raises(ValueError, match="not divisible by the 3 hosts"):
        pipeline.Loader(examples, cfg, process_index=0, process_count=3)


def test_epochs_cover_data_and_reshuffle(pairs, ct):
    cfg = pipeline.LoaderConfig(
        global_batch_size=9, seq_len=512, pad_id=ct.pad_id, seed=0, num_epochs=2
    )
    loader = pipeline.Loader(pairs, cfg, process_index=0, process_count=1)
    batches = list(loader)
    assert len(batches) == loader.num_steps == 20
    order = np.concatenate([b["example_index"] for b in batches])
    first, second = order[:90], order[90:]
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(90))
    assert first.tolist() != second.tolist()  # a new order each epoch
    assert loader.epoch_of(0) == 0 and loader.epoch_of(10) == 1
    again = pipeline.Loader(pairs, cfg, process_index=0, process_count=1)
    assert all(_same(a, b) for a, b in zip(batches, again))  # same seed, same batches
    other = pipeline.Loader(
        pairs, pipeline.LoaderConfig(9, 512, ct.pad_id, seed=1), process_index=0, process_count=1
    )
    assert next(other)["example_index"].tolist() != batches[0]["example_index"].tolist()


def test_buckets_bound_shapes_and_packing_fills_rows(pairs, convs, ct):
    loader = pipeline.Loader(
        pairs, _cfg(ct.pad_id, buckets=(256, 384, 512)), process_index=0, process_count=1
    )
    shapes = {b["tokens"].shape for b in loader}
    assert shapes <= {(8, 2, 256), (8, 2, 384), (8, 2, 512)}
    packed = pipeline.Loader(convs, _cfg(ct.pad_id), process_index=0, process_count=1)
    padded = pipeline.Loader(
        convs, _cfg(ct.pad_id, packing=False), process_index=0, process_count=1
    )
    assert packed.units_per_epoch < len(convs) == padded.units_per_epoch
    seen = [i for k in range(packed.units_per_epoch) for i in packed.unit(k)]
    assert sorted(seen) == list(range(len(convs)))  # every conversation packed exactly once
    b = next(packed)
    assert b["tokens"].shape == (8, 512) and b["segment_ids"].max() > 1
    assert next(padded)["segment_ids"].max() == 1


def test_config_errors(pairs, ct):
    with pytest.raises(ValueError, match="more than seq_len 64"):
        pipeline.Loader(pairs, _cfg(ct.pad_id, seq_len=64))
    with pytest.raises(ValueError, match="do not fill one global batch of 128"):
        pipeline.Loader(pairs, _cfg(ct.pad_id, global_batch_size=128))
    with pytest.raises(ValueError, match="no examples"):
        pipeline.Loader([], _cfg(ct.pad_id))


@pytest.mark.parametrize("kind", ["pairs", "convs"])
def test_pad_last_batch_keeps_every_example(kind, request, ct):
    examples = request.getfixturevalue(kind)
    dropped = pipeline.Loader(
        examples, _cfg(ct.pad_id, global_batch_size=16), process_index=0, process_count=1
    )
    padded = pipeline.Loader(
        examples,
        _cfg(ct.pad_id, global_batch_size=16, pad_last_batch=True),
        process_index=0,
        process_count=1,
    )
    assert padded.num_steps == dropped.num_steps + 1
    batches = list(padded)
    last = batches[-1]
    empty = last["attention_mask"].reshape(16, -1).sum(axis=1) == 0
    assert empty.any() and not empty.all()
    assert (last["loss_mask"].reshape(16, -1)[empty] == 0).all()
    if kind == "pairs":
        assert (last["example_index"][empty] == -1).all()
        seen = np.concatenate([b["example_index"] for b in batches])
        assert sorted(seen[seen >= 0].tolist()) == list(range(len(examples)))


def test_endless_packing_is_random_access_with_bounded_plans(convs, ct):
    cfg = _cfg(ct.pad_id, num_epochs=None)
    a = pipeline.Loader(convs, cfg, process_index=0, process_count=1)
    assert a.num_steps is None
    far = 12 * a.units_per_epoch // 8  # ~12 epochs in
    late = a.batch(far)
    assert len(a.units._plans) <= 3 and a.epoch_of(far) >= 11
    early = a.batch(1)  # an evicted epoch is recomputed identically
    b = pipeline.Loader(convs, cfg, process_index=0, process_count=1)
    assert _same(early, b.batch(1)) and _same(late, b.batch(far))
    assert _same(early, [next(b) for _ in range(2)][1])


def test_host_batches_assemble_on_the_mesh(pairs, ct):
    import jax

    from psycho_jax.core.sharding import make_mesh, shard_batch

    mesh = make_mesh((1, -1, 1))
    loader = pipeline.Loader(
        pairs, _cfg(ct.pad_id, global_batch_size=16), process_index=0, process_count=1
    )
    batch = shard_batch(next(loader), mesh)
    assert batch["tokens"].shape[0] == 16 and batch["ratings"].shape == (16, 2, 7)
    assert batch["tokens"].sharding.spec[0] == ("data", "fsdp")
    assert np.array_equal(jax.device_get(batch["tokens"]), loader.batch(0)["tokens"])


@pytest.mark.parametrize(
    "kind, options, layout, read_back",
    [
        ("convs", dict(packing=True, pairs_per_row=3), BatchLayout.SFT_PACKED, None),
        ("convs", dict(packing=False), BatchLayout.SFT_PADDED, BatchLayout.SFT_PACKED),
        ("pairs", dict(packing=True), BatchLayout.PAIRS, None),
        (
            "pairs",
            dict(packing=False, pairs_per_row=3, seq_len=1024),
            BatchLayout.PACKED_PAIRS,
            None,
        ),
    ],
)
def test_one_layout_per_loader(kind, options, layout, read_back, request, ct):
    """The layout is decided once from the data and the config (`packing` for conversations,
    `pairs_per_row` for pairs, each ignored for the other) and read back from the batch; padded
    SFT rows are packed rows of one conversation, so they read back as SFT_PACKED."""
    loader = pipeline.Loader(
        request.getfixturevalue(kind), _cfg(ct.pad_id, **options), process_index=0, process_count=1
    )
    assert loader.layout is layout
    batch = loader.batch(0)
    assert BatchLayout.of_batch(batch) is (read_back or layout)
    rows = [[loader.examples[i] for i in loader.unit(k)] for k in range(8)]
    if layout.packed:
        assert batch["tokens"].shape[-1] == loader.config.seq_len
        assert max(len(r) for r in rows) > 1
    else:
        assert batch["tokens"].shape[-1] in loader.buckets and {len(r) for r in rows} == {1}
