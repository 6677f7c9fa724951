"""Smoke runs of the benchmark harness, so it cannot rot. Not timings: nothing here asserts speed."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.bench import bench, load_results, prepare_step, save_results
from parity.errors import InputError
from parity.report import render

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_suite_runs_one_round_on_a_tiny_preset():
    result = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                             "-k", "perceptron", "--bench-preset", "tiny", "--bench-batch", "4",
                             "--benchmark-disable"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "12 passed" in result.stdout  # 3 frameworks x eager/compiled x inference/train


def test_embedding_gradient_suite_runs():
    result = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_embedding_grad.py", "-q", "-p",
                             "no:cacheprovider", "-k", "t5_relative_bias", "--benchmark-disable"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "12 passed" in result.stdout  # 3 frameworks x float32/bf16 x gather/one-hot


def test_results_round_trip_into_the_report(tmp_path):
    results = [bench("lenet5", fw, mode="eager", task=task, batch=4, rounds=2, preset="tiny")
               for fw in ("torch", "keras", "jax") for task in ("inference", "train")]
    for r in results:
        assert len(r.times_s) == 2 and r.median_s > 0 and r.samples_per_s > 0 and r.flops_per_step > 0
        assert r.peak_gflops > 0 and r.settings["cpu_count"] >= 1 and r.device.startswith("cpu-")
        assert r.page_faults_per_step >= 0
    path = save_results(results, tmp_path / "results")
    assert json.loads(path.read_text())[0]["framework"] == "torch"
    rows = load_results(tmp_path / "results")
    assert len(rows) == 6
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- bench-report:start -->\n<!-- bench-report:end -->\nafter\n")
    render(rows, page, tmp_path / "figures")
    text = page.read_text()
    assert "| lenet5 (tiny) | 4 | inference | eager |" in text and text.endswith("after\n")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir())[0].startswith("throughput-inference")


def test_bad_bench_arguments_are_clear_errors():
    with pytest.raises(InputError, match=r"bench mode: expected one of \['eager', 'compiled'\], got 'jit'"):
        bench("mlp", "torch", mode="jit")
    with pytest.raises(InputError, match=r"bench dtype: expected one of \['float32', 'bf16'\], got 'float16'"):
        bench("mlp", "torch", dtype="float16")


def test_gpu_script_dry_run():
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity.cli check" in result.stdout and "parity.cli bench" in result.stdout and "--device gpu" in result.stdout
    headline = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--transformers"], cwd=ROOT,
                              capture_output=True, text=True)
    assert headline.returncode == 0, headline.stdout + headline.stderr
    assert "check mha transformer bert gpt2 t5" in headline.stdout and "bench gpt2" in headline.stdout
    assert "resnet50" not in headline.stdout  # only the transformers' block


@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_bf16_runs_every_step_in_bfloat16(framework):
    """bf16 benchmarks compute in bfloat16 end to end in every framework (not float32 layers fed
    bf16 inputs, which Flax's `dtype` promotion or a Keras float32 policy would silently give)."""
    step, args, *_ = prepare_step("lenet5", framework, mode="eager", task="inference", batch=4, dtype="bf16",
                                  preset="tiny")
    assert "bfloat16" in str(step(*args).dtype)
    result = bench("lenet5", framework, mode="compiled", task="train", batch=4, dtype="bf16", rounds=1, preset="tiny")
    assert result.dtype == "bf16" and result.median_s > 0


@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables:UserWarning")  # Keras: BERT's pooler
@pytest.mark.parametrize("task", ["inference", "train"])
@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
@pytest.mark.parametrize("name", ["mha", "transformer", "bert", "gpt2", "t5", "seq2seq_bahdanau"])
def test_named_input_models_run_their_benchmark_step(name, framework, task):
    """Models with named inputs get them by keyword in the timed step (the decoder's ids, masks),
    without `lengths`: the dense full-length path. One eager step at the tiny preset, finite."""
    step, args, flops, *_ = prepare_step(name, framework, mode="eager", task=task, batch=2, preset="tiny")
    assert isinstance(args[1], dict) and "lengths" not in args[1] and flops > 0
    result = np.asarray(step(*args), dtype=np.float64)
    assert np.all(np.isfinite(result))
