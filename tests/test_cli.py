import json
import subprocess
import sys

import pytest

import parity
from parity.cli import main


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich wraps table cells to the terminal width


def test_list(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["architecture"] for r in rows] == parity.architectures()
    assert [r["architecture"] for r in rows][:4] == ["perceptron", "mlp", "lenet5", "alexnet"]


def test_check_prints_the_table_and_passes(capsys):
    assert main(["check", "perceptron", "--dtype", "all"]) == 0
    out = capsys.readouterr().out
    assert "torch-keras" in out and "keras-jax" in out and "float64" in out and "2/2 checks passed" in out


def test_check_json_with_training_mode(capsys):
    assert main(["check", "mlp", "--dtype", "float32", "--train", "--frameworks", "torch,jax", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["train"] for r in reports] == [False, True] and all(r["passed"] for r in reports)


def test_check_fails_with_nonzero_exit_when_parity_breaks(monkeypatch, capsys):
    import keras_impl.api

    export = keras_impl.api.load_state

    def drop_a_bias(model, state):
        return export(model, dict(state, **{"fc.bias": state["fc.bias"] + 1.0}))

    monkeypatch.setattr(keras_impl.api, "load_state", drop_a_bias)
    assert main(["check", "perceptron", "--dtype", "float32"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_diff_shows_every_module(capsys):
    assert main(["diff", "lenet5"]) == 0
    out = capsys.readouterr().out
    for module in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        assert module in out
    assert "first divergence: none" in out


def test_unknown_architecture_exits_2_with_the_valid_names(capsys):
    assert main(["check", "resnet9000"]) == 2
    assert "unknown architecture 'resnet9000'; registered: ['perceptron', 'mlp', 'lenet5', 'alexnet'," in (
        capsys.readouterr().err)


def test_unknown_framework_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--frameworks", "torch,mxnet"])
    assert exit_info.value.code == 2


def test_console_script_runs_without_loading_frameworks_for_list():
    result = subprocess.run([sys.executable, "-c", "import sys, parity.cli; parity.cli.main(['list']); "
                             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('torch', 'tensorflow', 'keras', 'jax', 'flax')))"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("[]")


def test_bench_times_each_framework_in_its_own_process(capsys, tmp_path):
    """Several frameworks: one subprocess each (idle thread pools of one framework slow the next)."""
    assert main(["bench", "perceptron", "--preset", "tiny", "--framework", "torch,jax", "--mode", "eager",
                 "--task", "inference", "--batch", "4", "--rounds", "1", "--json", "--save", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["framework"], r["mode"], r["task"]) for r in rows] == [("torch", "eager", "inference"),
                                                                      ("jax", "eager", "inference")]
    assert len(list(tmp_path.glob("*/bench-*.json"))) == 2  # each process saved its own results
