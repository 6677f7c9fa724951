import os

import numpy as np
import pytest

import parity

ARCHITECTURES = parity.architectures()


@pytest.fixture
def mlp_spec():
    return parity.spec("mlp", "tiny")


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_init_state_is_deterministic_and_matches_layout(name, dtype):
    spec = parity.spec(name, "tiny")
    a, b = parity.init_state(spec, 3, dtype), parity.init_state(spec, 3, dtype)
    assert list(a) == list(parity.layout(spec))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    parity.check_state(spec, a)
    other = parity.init_state(spec, 4, dtype)
    assert any(not np.array_equal(a[k], other[k]) for k in a if a[k].size > 1)


def test_init_uses_torch_default_bounds(mlp_spec):
    state = parity.init_state(mlp_spec, 0)
    bound = 1 / np.sqrt(16)
    assert np.abs(state["blocks.0.fc.weight"]).max() <= bound
    assert np.abs(state["blocks.0.fc.weight"]).max() > 0.9 * bound
    assert np.all(state["blocks.0.bn.weight"] == 1) and np.all(state["blocks.0.bn.running_var"] == 1)
    assert state["blocks.0.bn.num_batches_tracked"].dtype == np.int64
    assert state["blocks.0.bn.num_batches_tracked"].shape == ()


def test_random_norms_randomises_only_batch_norm(mlp_spec):
    plain, probe = parity.init_state(mlp_spec, 0), parity.init_state(mlp_spec, 0, random_norms=True)
    assert np.array_equal(plain["blocks.0.fc.weight"], probe["blocks.0.fc.weight"])
    assert not np.array_equal(plain["blocks.0.bn.running_mean"], probe["blocks.0.bn.running_mean"])


def test_check_state_reports_every_problem_at_once(mlp_spec):
    state = parity.init_state(mlp_spec, 0)
    del state["head.bias"]
    state["head.extra"] = np.zeros(3, np.float32)
    state["blocks.0.fc.weight"] = np.zeros((3, 3), np.float32)
    state["blocks.1.fc.bias"] = np.full(24, np.nan, np.float32)
    state["blocks.0.bn.num_batches_tracked"] = np.array(0, np.int32)
    with pytest.raises(parity.StateError) as error:
        parity.check_state(mlp_spec, state)
    message = str(error.value)
    assert len(error.value.problems) == 5
    for expected in ["missing 1 tensor(s): ['head.bias']", "unexpected 1 tensor(s): ['head.extra']",
                     "blocks.0.fc.weight: expected shape (32, 16), got (3, 3)",
                     "blocks.1.fc.bias: expected finite values, got 24 NaN/inf of 24",
                     "blocks.0.bn.num_batches_tracked: expected dtype int64, got int32"]:
        assert expected in message


def test_check_state_rejects_mixed_and_integer_float_dtypes(mlp_spec):
    state = parity.init_state(mlp_spec, 0)
    state["head.weight"] = state["head.weight"].astype(np.float64)
    with pytest.raises(parity.StateError, match=r"expected one dtype out of \['float32', 'float64'\], got \['float32', 'float64'\]"):
        parity.check_state(mlp_spec, state)
    state = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in parity.init_state(mlp_spec, 0).items()}
    with pytest.raises(parity.StateError, match="float16"):
        parity.check_state(mlp_spec, state)


def test_save_load_round_trip_with_spec_metadata(tmp_path, mlp_spec):
    state = parity.init_state(mlp_spec, 0, "float64", random_norms=True)
    path = parity.save_state(tmp_path / "ckpt.safetensors", state, mlp_spec)
    assert parity.read_spec(path) == mlp_spec
    loaded = parity.load_state(path)
    assert list(loaded) == list(state)
    assert all(np.array_equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temp files left


def test_checkpoints_are_safetensors_not_pickle(tmp_path, mlp_spec):
    path = parity.save_state(tmp_path / "c.safetensors", parity.init_state(mlp_spec, 0), mlp_spec)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.read_bytes()[8:9] == b"{" and header_len < path.stat().st_size


def test_save_validates_before_touching_the_target(tmp_path, mlp_spec):
    good = parity.init_state(mlp_spec, 0)
    path = parity.save_state(tmp_path / "c.safetensors", good, mlp_spec)
    before = path.read_bytes()
    bad = dict(good, **{"head.weight": np.full((5, 24), np.inf, np.float32)})
    with pytest.raises(parity.StateError, match="head.weight: expected finite"):
        parity.save_state(path, bad, mlp_spec)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, mlp_spec, monkeypatch):
    path = parity.save_state(tmp_path / "c.safetensors", parity.init_state(mlp_spec, 0), mlp_spec)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        parity.save_state(path, parity.init_state(mlp_spec, 1), mlp_spec)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_truncated_checkpoint_is_a_clear_error(tmp_path, mlp_spec):
    path = parity.save_state(tmp_path / "c.safetensors", parity.init_state(mlp_spec, 0), mlp_spec)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(parity.CheckpointError, match=r"expected a safetensors file .*could not parse"):
        parity.load_state(path)


@pytest.mark.parametrize("content", [b"", b"\x80\x04\x95 this is a pickle", b"x" * 64])
def test_non_safetensors_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(parity.CheckpointError, match="model.pt.*expected a safetensors file"):
        parity.load_state(path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(parity.CheckpointError, match="found nothing there"):
        parity.load_state(tmp_path / "nope.safetensors")


def test_load_validates_against_the_stored_spec(tmp_path, mlp_spec):
    state = parity.init_state(mlp_spec, 0)
    path = parity.save_state(tmp_path / "c.safetensors", state)  # no spec stored
    assert parity.read_spec(path) is None
    other = parity.spec("mlp", "tiny", num_classes=7)
    with pytest.raises(parity.StateError, match=r"head.weight: expected shape \(7, 24\), got \(5, 24\)"):
        parity.load_state(path, other)


def test_a_model_whose_variables_do_not_match_the_layout_is_reported(mlp_spec):
    from parity.state import match_native_names

    native = {name: object() for name in parity.layout(mlp_spec)}
    del native["head.bias"]
    native["head.scale"] = object()
    with pytest.raises(parity.StateError, match=r"(?s)no variable for \['head.bias'\].*outside the layout: \['head.scale'\]"):
        match_native_names("keras", mlp_spec, native)
