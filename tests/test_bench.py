"""The benchmark suite (bench/suite.py): its option parsing, FLOP counts and report on made-up
numbers, and a smoke run of the whole suite on the tiny shape (every task, both frameworks, decode)."""

import gzip
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import profile_summary  # noqa: E402
import suite  # noqa: E402
import train_step  # noqa: E402


def test_tiny_shape_is_the_tiny_configs_model():
    """bench/shapes.py spells the `:tiny` configs' model in transformers' names (it cannot import
    psycho_jax: the PyTorch peer's process must not load JAX); the two must agree."""
    from shapes import SHAPES

    from psycho_jax.config import TINY_MODEL

    hf = SHAPES["tiny"]["hf"]
    names = dict(dim="hidden_size", n_layers="num_hidden_layers", n_heads="num_attention_heads",
                 n_kv_heads="num_key_value_heads", head_dim="head_dim", ffn_dim="intermediate_size")  # fmt: skip
    assert {k: hf[v] for k, v in names.items()} == TINY_MODEL


def test_parse_options():
    configs = suite.parse_options(
        "remat=model.remat=dots; both=model.scan_layers=True,model.attention=einsum;"
    )
    assert [c.name for c in configs] == ["jax:remat", "jax:both"]
    assert configs[1].overrides == ("model.scan_layers=True", "model.attention=einsum")
    assert suite.parse_options("") == []
    for bad in ("remat", "remat=", "x=model.remat", "torch=model.remat=dots", "a=b=c;a=b=d"):
        with pytest.raises(ValueError, match="--options"):
            suite.parse_options(bad)


def test_flops_per_token(tmp_path):
    f = {t: suite.flops_per_token("tiny", t, str(tmp_path)) for t in train_step.TASKS}
    sft = f["sft"]["model"]
    assert f["dpo"]["model"] / sft == pytest.approx(4 / 3)  # live reference: one more forward
    assert f["dpo_pre"]["model"] == sft
    hf = suite.SHAPES["tiny"]["hf"]
    # The library counts an LM head for the reward model too; the suite does not.
    assert f["reward"]["library"] == sft
    assert f["reward"]["model"] == sft - 6 * hf["hidden_size"] * (hf["vocab_size"] - 1)


def test_worker_failure_shows_stderr_tail():
    code = "import sys; print('\\n'.join(f'line {i}' for i in range(100)), file=sys.stderr); sys.exit(3)"
    with pytest.raises(suite.WorkerError, match=r"exit status 3[\s\S]*line 99") as e:
        suite.run_process([sys.executable, "-c", code], timeout=60, what="fake")
    assert "line 0\n" not in str(e.value)  # only the tail


def _fake_results(jax_tps: float, jax_rss: int, compiles: int) -> dict:
    def run(tps, rss, jax=True):
        r = dict(tokens_per_s=tps, peak_rss_bytes=rss, compile_s=1.0)
        if jax:
            return dict(r, compiles=[compiles], cache_size=[1], one_compile=compiles == 1)
        return dict(r, parity_max_abs=1e-6)

    train = {
        shape: {
            task: {
                "jax": run(jax_tps, jax_rss),
                "torch": run(1000.0, 2**30, jax=False),
                "jax:remat": run(2 * jax_tps, jax_rss, True),
            }
            for task in ("sft", "dpo")
        }
        for shape in ("tiny", "medium")
    }
    flops = {s: {"sft": {"model": 3e6}, "dpo": {"model": 4e6}} for s in train}
    matmul = dict(n=8, xla_flops=1e10, torch_flops=1e10, torch_threads=2)
    options = suite.parse_options("remat=model.remat=dots")
    meta = suite.machine_info()
    meta["load_after"] = meta["load_before"]
    results = dict(
        meta=meta,
        args=dict(repeats=1),
        matmul=matmul,
        train=train,
        flops_per_token=flops,
        analysis=suite.analyse(train, flops, matmul, options),
    )
    return results


def test_analysis_and_report():
    results = _fake_results(jax_tps=1500.0, jax_rss=2**29, compiles=1)
    a = results["analysis"]
    assert {(r["shape"], r["task"], r["tokens_per_s"]) for r in a["ratios"]} >= {
        ("medium", "dpo", 1.5)
    }
    assert [c["analytic"] for c in a["cost_ratios"]] == pytest.approx([4 / 3, 4 / 3])
    assert a["options"][0]["vs_jax"] == 2.0 and a["options"][0]["vs_torch"] == 3.0
    # medium: tokens/s, RSS, 2 x one compilation, matmul fraction; tiny: no speed or matmul target.
    assert sum(t["shape"] == "medium" for t in a["targets"]) == 2 * 5
    assert sum(t["shape"] == "tiny" for t in a["targets"]) == 2 * 3
    fraction = {t["task"]: t for t in a["targets"] if "matmul" in t["target"]}
    assert fraction["sft"]["value"] == pytest.approx(1500 * 3e6 / 1e10)
    assert all(t["passed"] for t in a["targets"] if "matmul" not in t["target"])
    text = suite.report_text(results)
    assert "| medium | dpo | 1,500 | 1,000 | **1.50** |" in text
    assert "PASS  tokens/s >= 1.3x torch" in text and "MISS  >= 50% of XLA matmul" in text

    slow = _fake_results(jax_tps=1200.0, jax_rss=2**31, compiles=2)["analysis"]["targets"]
    assert not any(t["passed"] for t in slow if t["target"] != ">= 50% of XLA matmul rate")


def test_trl_rows_carry_the_benchmark_token_ids():
    """TRL's trainers see the benchmark batch's ids: SFT/reward rows as ids, DPO rows as text
    that the word tokenizer turns back into the same ids (DPOTrainer appends the EOS itself)."""
    t = suite.SHAPES["tiny"]["seq"]
    tok = train_step._word_tokenizer(suite.SHAPES["tiny"]["hf"]["vocab_size"])
    pairs = train_step.make_batch("reward", "tiny", seed=0)["tokens"]
    sft = train_step.make_batch("sft", "tiny", seed=0)["tokens"]
    dpo = train_step._trl_rows("dpo", "tiny", 2)
    for k, key in enumerate(("chosen", "rejected")):  # the pair shares the chosen row's prompt
        ids = tok(dpo[1]["prompt"] + dpo[1][key], add_special_tokens=False)["input_ids"]
        assert ids == pairs[1, 0, : t // 4].tolist() + pairs[1, k, t // 4 : t - 1].tolist()
    assert (
        tok(dpo[0]["prompt"], add_special_tokens=False)["input_ids"]
        == pairs[0, 0, : t // 4].tolist()
    )
    reward = train_step._trl_rows("reward", "tiny", 2)
    assert reward[1]["rejected_ids"] == pairs[1, 1].tolist()
    rows = train_step._trl_rows("sft", "tiny", 2)
    assert rows[0]["input_ids"] == sft[0].tolist() and sum(rows[0]["completion_mask"]) == t - t // 4


@pytest.mark.parametrize("task", ["sft", "dpo_pre"])
def test_counsel_batches_same_examples_packed_and_padded(task):
    """--data=counsel: psycho_jax's rows are packed to the fixed shape, the peer's batches padded
    to their longest, both from the same examples, and the token counts are the real tokens."""
    s = train_step.SHAPES["small"]
    b, t = s["batch"], s["seq"]
    ex = train_step.counsel_examples(task, "small", 200)
    lengths = np.asarray([[len(x) for x in e] for e in ex])
    assert (lengths[:, 0] + lengths[:, 1:].max(1) <= t).all()
    # CounselChat's medians (73 + 9 prompt, 166 reply tokens) at half scale (seq 256 / 512).
    assert 30 <= np.median(lengths[:, 0]) <= 50 and 65 <= np.median(lengths[:, 1]) <= 100
    jx = train_step.counsel_jax_batches(task, "small", 3)
    pt = train_step.counsel_padded_batches(task, "small", 3)
    lead = (b,) if task == "sft" else (b, 2)
    for batch in jx:
        assert batch["tokens"].shape == lead + (t,)
        assert batch["segment_ids"].max() > 1  # several sequences share a row
    # The peer's batches are consecutive groups of the epoch's examples, chosen by their fill.
    epoch = train_step.counsel_examples(task, "small", train_step.EPOCH_EXAMPLES)
    _, real, slots = train_step._padded_epoch(task, "small", 3)
    for k, batch in zip(train_step.quantile_sample(real / slots, 3), pt, strict=True):
        longest = batch["tokens"].shape[-1]
        assert batch["tokens"].shape == lead + (longest,) and longest <= t
        assert batch["attention_mask"][..., -1].any()  # padded to the batch's longest, no more
        first = epoch[k * b]
        n = len(first[0]) + len(first[1])
        np.testing.assert_array_equal(
            batch["tokens"].reshape(-1, longest)[0, :n], np.concatenate(first[:2])
        )
    if task == "dpo_pre":
        assert jx[0]["ref_logps"].shape == (b, train_step.PAIRS_PER_ROW, 2)
    real_jx, fill_jx = train_step.real_tokens(jx)
    real_pt, fill_pt = train_step.real_tokens(pt)
    assert real_jx == np.mean([x["attention_mask"].sum() for x in jx])
    assert fill_jx > fill_pt and real_jx > real_pt
    # The timed sample fills as the whole epoch does, on both sides (quantile sampling).
    assert abs(fill_jx - train_step.epoch_real_fraction("jax", task, "small", 3)) < 0.03
    assert abs(fill_pt - train_step.epoch_real_fraction("torch", task, "small", 3)) < 0.03


def test_quantile_sample_spreads_over_the_fill_distribution():
    fills = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0]
    picks = train_step.quantile_sample(fills, 2)
    assert picks == sorted(picks) and sorted(fills[i] for i in picks) == [0.3, 0.8]
    assert len(set(train_step.quantile_sample(fills, 10))) == 10
    with pytest.raises(ValueError, match="fewer than the 11"):
        train_step.quantile_sample(fills, 11)


def _trace_event(name, ts, dur, tid=1):
    return {"ph": "X", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


def test_profile_summary_self_times_by_kind(tmp_path, capsys):
    """Self times (an op's duration less its nested events'), the executor's events left out, only
    XLA's threads, summed by kind; the CLI reads the newest trace under a directory."""
    meta = [
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": t, "args": {"name": n}}
        for t, n in ((1, "tf_XLAEigen/1"), (2, "tf_XLAPjRtCpuClient/2"), (3, "python"))
    ]
    events = [
        _trace_event("ThunkExecutor::Execute", 0, 100),
        _trace_event("ynn_fusion.1", 0, 40),
        _trace_event("conditional", 40, 50),  # holds a matmul and a copy: 10 us of its own
        _trace_event("ynn_fusion.7", 40, 30),
        _trace_event("copy_bitcast_fusion.3", 70, 10),
        _trace_event("all-gather.2", 90, 10),
        _trace_event("ThunkExecutor::Execute (wait for completion)", 0, 100, tid=2),
        _trace_event("Wait: pending_threads=1/2", 10, 5, tid=2),
        _trace_event("ynn_fusion.9", 0, 1000, tid=3),  # not an XLA thread
    ]
    trace = {"traceEvents": meta + events}
    times = profile_summary.self_times(trace)
    assert dict(times) == {
        "ynn_fusion.1": 40,
        "conditional": 10,
        "ynn_fusion.7": 30,
        "copy_bitcast_fusion.3": 10,
        "all-gather.2": 10,
        "Wait: pending_threads=1/2": 5,
    }
    kinds = profile_summary.by_kind(times)
    assert kinds == pytest.approx(
        {"matmul": 70e-6, "collective": 10e-6, "wait": 5e-6, "movement": 10e-6, "other": 10e-6}
    )
    run = tmp_path / "plugins" / "profile" / "run1"
    run.mkdir(parents=True)
    with gzip.open(run / "host.trace.json.gz", "wt") as f:
        json.dump(trace, f)
    profile_summary.main([str(tmp_path), "--top=5"])
    out = capsys.readouterr().out
    assert "| matmul | 0.000 | 66.7% |" in out and "all-gather.2" in out


@pytest.mark.slow
def test_train_step_profile(tmp_path, capsys):
    """`train_step.py --profile` traces a step of the real train step, and `profile_summary`
    finds its matrix products in it."""
    train_step.prepare(str(tmp_path), "tiny")
    cmd = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--framework=jax", "--task=sft"]
    cmd += ["--shape=tiny", f"--model_dir={tmp_path}", "--warmup=1", "--steps=1", "--windows=1"]
    cmd += [f"--profile={tmp_path / 'prof'}", f"--json={tmp_path / 'r.json'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    profile_summary.main([str(tmp_path / "prof")])
    out = capsys.readouterr().out
    share = float(re.search(r"\| matmul \| [\d.]+ \| ([\d.]+)% \|", out).group(1))
    assert share > 0, out


@pytest.mark.slow
def test_train_step_bfloat16_both_frameworks(tmp_path):
    """`--precision=bfloat16`: psycho_jax's bfloat16 compute against torch CPU autocast, from the
    same float32 weights (parity checked in float32 first); both losses finite and close."""
    train_step.prepare(str(tmp_path), "tiny")
    losses = {}
    for fw in ("jax", "torch"):
        out = tmp_path / f"{fw}.json"
        cmd = [sys.executable, str(ROOT / "bench" / "train_step.py"), f"--framework={fw}"]
        cmd += ["--task=dpo", "--shape=tiny", f"--model_dir={tmp_path}", "--precision=bfloat16"]
        cmd += ["--warmup=1", "--steps=1", "--windows=1", f"--json={out}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        r = json.loads(out.read_text())
        assert r["precision"] == "bfloat16" and r["tokens_per_s"] > 0
        losses[fw] = r["loss"]
    assert losses["jax"] == pytest.approx(losses["torch"], abs=0.05), losses


@pytest.mark.slow
def test_suite_tiny_smoke(tmp_path):
    """The whole suite on the tiny shape with TRL's trainers: 12 worker processes, then decode
    (~3 minutes on 2 CPUs)."""
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "suite.py"),
        "--shapes=tiny",
        "--repeats=1",
        "--warmup=1",
        "--steps=1",
        "--windows=2",
        "--matmul_n=512",
        "--decode_new_tokens=8",
        "--trl",
        f"--json={out}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    train = results["train"]["tiny"]
    assert set(train) == set(train_step.TASKS)
    for task, by_config in train.items():
        assert set(by_config) == {"jax", "torch", "trl"}, task
        for fw, r in by_config.items():
            assert r["tokens_per_s"] > 0 and r["peak_rss_bytes"] > 0, (task, fw)
        assert by_config["torch"]["parity_max_abs"] <= 1e-4, task
        assert by_config["jax"]["compiles"] == [1], task
        assert by_config["jax"]["cache_size"] == [1], task
    assert results["matmul"]["xla_flops"] > 0 and results["matmul"]["torch_flops"] > 0
    assert {d["batch"] for d in results["decode"]["results"]} == {1, 16}
    assert all(d["jax_tok_s"] > 0 and d["torch_tok_s"] > 0 for d in results["decode"]["results"])
    assert results["meta"]["cpu_count"] and results["meta"]["versions"]["torch"]
    # DPOTrainer's reference is the policy's starting point: its losses stay near log 2 (fresh
    # random pairs every step, learning rate 1e-5; `loss` is its mean over the steps).
    assert train["dpo"]["trl"]["loss"] == pytest.approx(np.log(2.0), abs=0.01)
    ratios = {r["task"]: r for r in results["analysis"]["ratios"]}
    assert all(ratios[t]["tokens_per_s_vs_trl"] > 0 for t in train_step.TASKS)
    for line in (
        "Training step, psycho_jax / PyTorch",
        "| tiny | dpo_pre |",
        "psycho_jax / TRL's own trainers",
        "Targets",
    ):
        assert line in proc.stdout, line


@pytest.mark.slow
def test_suite_tiny_counsel_data(tmp_path):
    """`--data=counsel`: every task's workers train on packed (psycho_jax) and padded (PyTorch)
    CounselChat-length batches, one compilation each, real tokens counted (~1 minute)."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "suite.py"), "--shapes=tiny", "--repeats=1"]
    cmd += ["--warmup=1", "--steps=2", "--windows=1", "--matmul_n=256", "--skip_decode"]
    cmd += ["--data=counsel", f"--json={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    slots = {"sft": 4 * 64, "reward": 4 * 2 * 64}
    for task, by_config in results["train"]["tiny"].items():
        jx, pt = by_config["jax"], by_config["torch"]
        assert jx["compiles"] == [1] and jx["cache_size"] == [1], task
        assert np.isfinite(jx["loss"]) and np.isfinite(pt["loss"]), task
        assert jx["real_fraction"] > pt["real_fraction"], task
        for side in (jx, pt):  # the timed steps fill as the epoch they are drawn from
            assert abs(side["real_fraction"] - side["epoch_real_fraction"]) < 0.05, task
        assert jx["tokens_per_step"] == pytest.approx(
            jx["real_fraction"] * slots["sft" if task == "sft" else "reward"]
        )
    assert "Real tokens / token slots (--data=counsel" in proc.stdout
    assert "timed steps / epoch" in proc.stdout
    assert "float32, counsel data" in proc.stdout
