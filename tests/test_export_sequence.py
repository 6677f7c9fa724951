"""Exports of the recurrent models (rnn, lstm, gru, char_lm): the exported signature in every
format, a language model stepped through its artifacts with the state carried, and the written
limitations (no `lengths`; a fixed time axis in torch-export, TFLite and torch's ONNX RNN).

The numerical check of every architecture x framework x format (batches 1 and 7, zero initial
states, other lengths where the time axis is symbolic, the three ONNX files against each other)
is tests/test_export.py::test_every_framework_and_format_matches_native_and_onnx_files_agree.
"""
import functools
import importlib

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.export import (FIXED_TIME, FORMATS, NOT_EXPORTED, OPSET, ExportError, default_path, export,
                           state_hash)
from parity.runtime import artifact_inputs, run_exported

TOLERANCE = tolerances.FORWARD["float32"].rtol
ARTIFACTS = [(fw, fmt) for fmt, fws in FORMATS.items() for fw in fws]


@functools.cache
def _buildable(framework, name):
    try:
        parity.build(framework, parity.spec(name, "tiny"))
        return True
    except KeyError:  # the model is not written yet in that framework
        return False


def _params(name):
    """Every (framework, format), a visible skip where the framework has no such model yet."""
    return [pytest.param(fw, fmt, id=f"{fw}-{fmt}", marks=[] if _buildable(fw, name) else pytest.mark.skip(
        reason=f"no {fw} {name} model yet")) for fw, fmt in ARTIFACTS]


@pytest.fixture(scope="module")
def char_lm_exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    spec = parity.spec("char_lm", "tiny")
    state = parity.init_state(spec, 5, random_norms=True)
    paths = {}
    for framework, format in ARTIFACTS:
        if _buildable(framework, "char_lm"):
            paths[framework, format] = export(framework, spec, default_path(out, "char_lm", framework, format),
                                              format, state)
    return spec, state, paths


def _time(framework, format, spec):
    """The exported time axis: None (symbolic) or the spec's seq_len where the format fixes it."""
    return spec.seq_len if (framework, format) in FIXED_TIME else None


@pytest.mark.parametrize("framework, format", _params("char_lm"))
def test_char_lm_signature_int64_tokens_states_and_time_axis(char_lm_exports, framework, format):
    spec, _, paths = char_lm_exports
    time = _time(framework, format, spec)
    inputs = {name: (dtype, shape) for name, dtype, shape in artifact_inputs(paths[framework, format])}
    assert inputs == {"tokens": ("int64", (None, time)), "h_0": ("float32", (2, None, 6)),
                      "c_0": ("float32", (2, None, 6))}, (framework, format)
    assert not set(NOT_EXPORTED) & set(inputs)  # no `lengths`


def test_char_lm_onnx_names_axes_and_metadata(char_lm_exports):
    import onnx

    spec, state, paths = char_lm_exports
    for framework in (fw for fw in parity.FRAMEWORKS if (fw, "onnx") in paths):
        model = onnx.load(str(paths[framework, "onnx"]))
        onnx.checker.check_model(model, full_check=True)
        graph = model.graph

        def dims(value):
            return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

        assert [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in graph.input] == [
            ("tokens", onnx.TensorProto.INT64, ["batch", "time"]),
            ("h_0", onnx.TensorProto.FLOAT, [2, "batch", 6]), ("c_0", onnx.TensorProto.FLOAT, [2, "batch", 6])]
        assert [(v.name, dims(v)) for v in graph.output] == [
            ("logits", ["batch", "time", 11]), ("h_n", [2, "batch", 6]), ("c_n", [2, "batch", 6])]
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["parity.state_sha256"] == state_hash(state) and meta["parity.framework"] == framework
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == OPSET


@pytest.mark.parametrize("framework, format", _params("char_lm"))
def test_a_deployed_language_model_steps_with_its_state_carried(char_lm_exports, framework, format):
    """Windows of the token stream run one after the other, each starting from the states the
    previous one returned, give the native model's run over the whole stream: 1 token at a time
    first where the time axis is symbolic, windows of seq_len where it is fixed."""
    spec, state, paths = char_lm_exports
    inputs, _ = parity.example_batch(spec.replace(seq_len=2 * spec.seq_len), 3, 11)
    native = parity.forward(framework, parity.build(framework, spec, state), inputs)
    fixed = _time(framework, format, spec)
    windows = [fixed, fixed] if fixed else [1, spec.seq_len - 1, spec.seq_len]
    states, logits, start = {"h_0": inputs["h_0"], "c_0": inputs["c_0"]}, [], 0
    for steps in windows:
        out = run_exported(paths[framework, format], {"tokens": inputs["tokens"][:, start:start + steps], **states})
        logits.append(out["logits"])
        states, start = {"h_0": out["h_n"], "c_0": out["c_n"]}, start + steps
    stepped = {"logits": np.concatenate(logits, axis=1), "h_n": states["h_0"], "c_n": states["c_0"]}
    for name in spec.output_names:
        assert tolerances.errors(stepped[name], native[name])[1] <= TOLERANCE, (framework, format, name)


def test_lengths_are_not_an_exported_input_and_the_limitation_is_written(char_lm_exports, tmp_path):
    spec = parity.spec("gru", "tiny")
    path = export("keras", spec, tmp_path / "gru.onnx")
    inputs, _ = parity.example_batch(spec, 2, 0)
    assert "lengths" in inputs and "lengths" not in [name for name, _, _ in artifact_inputs(path)]
    with pytest.raises(ExportError, match="no input 'lengths': exported recurrent layers take full-length sequences"):
        run_exported(path, inputs)
    inputs.pop("lengths")
    assert set(run_exported(path, inputs)) == {"output", "h_n"}
    doc = " ".join(importlib.import_module("parity.export").__doc__.split())  # the module, not parity.export()
    for text in ("No `lengths` input: exported recurrent layers take full-length sequences",
                 "GuardOnDataDependentSymNode", "fixed at the spec's `seq_len` in torch-export",
                 "in ONNX from torch for rnn", "and in TFLite", "run_exported fills omitted states with zeros"):
        assert text in doc, text


def test_a_fixed_time_axis_refuses_other_lengths_clearly(char_lm_exports):
    spec, _, paths = char_lm_exports
    inputs, _ = parity.example_batch(spec.replace(seq_len=3), 2, 0)
    for framework, format in FIXED_TIME:
        with pytest.raises(ExportError, match=f"could not run it as a {format} artifact"):
            run_exported(paths[framework, format], {"tokens": inputs["tokens"]})


def test_initial_states_default_to_zeros_and_unknown_inputs_are_named(char_lm_exports):
    spec, state, paths = char_lm_exports
    tokens = parity.example_batch(spec, 2, 3)[0]["tokens"].astype(np.int32)  # any integer type
    native = parity.forward("torch", parity.build("torch", spec, state), {"tokens": tokens.astype(np.int64)})
    for inputs in (tokens, {"tokens": tokens}):
        outputs = run_exported(paths["torch", "onnx"], inputs)
        assert tolerances.errors(outputs["logits"], native["logits"])[1] <= TOLERANCE
    with pytest.raises(ExportError, match=r"takes inputs \['tokens', 'h_0', 'c_0'\] \(initial states optional\)"):
        run_exported(paths["torch", "onnx"], {"tokens": tokens, "h_1": tokens})


@pytest.mark.parametrize("name, time", [("rnn", 5), ("gru", None), ("lstm", None)])
def test_torch_onnx_time_axis_is_symbolic_only_where_the_graph_does_not_depend_on_it(tmp_path, name, time):
    """torch traces at seq_len; ONNX LSTM/GRU graphs are identical one step longer (symbolic time),
    the RNN's is unrolled step by step (aten.rnn_tanh has no ONNX RNN lowering): fixed time."""
    spec = parity.spec(name, "tiny")
    path = export("torch", spec, tmp_path / f"{name}.onnx")
    inputs = {n: shape for n, _, shape in artifact_inputs(path)}
    states = {"h_0": (4, None, 4)} if name != "lstm" else {"h_0": (4, None, 4), "c_0": (4, None, 4)}
    assert inputs == {"sequence": (None, time, 3), **states}


def test_the_torch_limits_behind_the_exported_signature_still_hold():
    """Canaries: when torch.export learns to trace packed sequences or a dynamic time axis through
    nn.LSTM, these fail, and `lengths` / a symbolic time axis can be exported."""
    import torch

    spec = parity.spec("lstm", "tiny")
    model = parity.build("torch", spec).eval()
    x = torch.zeros(2, spec.seq_len, spec.input_size)
    with pytest.raises(Exception, match=r"Constraints violated \(time\)"):
        torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("time")},))
    h = torch.zeros(spec.num_layers * spec.directions, 2, spec.hidden_size)
    with pytest.raises(Exception, match="data-dependent expression"):
        torch.export.export(model, (x, torch.tensor([spec.seq_len, 2]), h, h))


def test_keras_exports_leave_the_model_as_it_was(tmp_path):
    """TFLite unrolls the keras.layers.RNN loops while tracing, SavedModel may copy the model to
    give its variables valid names: the model itself is unchanged."""
    import keras

    spec = parity.spec("lstm", "tiny")
    model = parity.build("keras", spec)
    names = [v.value.name for v in model.variables]
    export("keras", model, tmp_path / "lstm.tflite", "tflite")
    export("keras", model, tmp_path / "lstm", "savedmodel")
    assert not any(layer.unroll for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN))
    assert [v.value.name for v in model.variables] == names
