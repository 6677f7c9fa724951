"""Prove exports: every artifact, run in its own runtime, matches the native model.

For each architecture × framework × format: export from one canonical state, run the artifact
at batch 1 and batch 7 (the batch dimension is dynamic), and for ONNX with ONNX Runtime's graph
optimizations both on and off; compare with the native framework's forward. The three ONNX
files of one architecture are also compared with each other on the same inputs.

Recurrent models run on their exported inputs (no `lengths`: exported layers take full-length
sequences) with random initial states, once more with the states left out (zeros, filled in by
run_exported), and, where the artifact's time axis is symbolic, at 1 and seq_len + 3 steps too.
"""
from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from parity import tolerances
from parity.compare import example_batch
from parity.errors import ParityError
from parity.export import (FORMATS, NOT_EXPORTED, STATE_INPUTS, default_path, export, exportable_architectures,
                           is_sequence)
from parity.frameworks import FRAMEWORKS, build, forward, set_deterministic
from parity.runtime import artifact_inputs, run_exported
from parity.specs import spec as make_spec
from parity.state import init_state

BATCH_SIZES = (1, 7)
TOLERANCE = tolerances.FORWARD["float32"]


@dataclass
class ExportResult:
    architecture: str
    framework: str  # a framework, or "onnx: a vs b" for the cross-file comparison
    format: str
    max_rel: float | None
    error: str | None = None
    time_axis: int | None = None  # a recurrent artifact's fixed number of steps; None: symbolic or n/a

    @property
    def passed(self) -> bool:
        return self.error is None and self.max_rel is not None and self.max_rel <= TOLERANCE.rtol


def _worst(outputs_a: dict, outputs_b: dict) -> float:
    if set(outputs_a) != set(outputs_b):
        return float("inf")
    return max(tolerances.errors(outputs_a[k], outputs_b[k])[1] for k in outputs_a)


def _exported_inputs(spec, batch_size: int, seed: int, steps: int | None = None, states: bool = True):
    """example_batch's inputs, limited to what exported artifacts take; `steps` other than seq_len."""
    inputs = example_batch(spec if steps is None else spec.replace(seq_len=steps), batch_size, seed)[0]
    if not isinstance(inputs, dict):
        return inputs
    return {k: v for k, v in inputs.items() if k not in NOT_EXPORTED and (states or k not in STATE_INPUTS)}


def _time_axis(path, spec) -> int | None:
    """The fixed number of steps of a recurrent artifact's main input, None where it is symbolic."""
    if not is_sequence(spec):
        return None
    main = [shape for name, _, shape in artifact_inputs(path) if name not in STATE_INPUTS][0]
    return main[1]


def verify_architecture(name: str, preset: str = "tiny", out_dir=None, seed: int = 0,
                        frameworks=FRAMEWORKS) -> list[ExportResult]:
    """Export `name` in every supported framework/format and check every artifact."""
    spec = make_spec(name, preset)
    state = init_state(spec, seed, "float32", random_norms=True)
    batches = [_exported_inputs(spec, b, seed + b) for b in BATCH_SIZES]
    # Recurrent models, beyond the batches: a fresh start (no states given), and other lengths
    # (run only where the artifact's time axis is symbolic).
    fresh = [_exported_inputs(spec, 3, seed + 3, states=False)] if is_sequence(spec) else []
    lengths = [_exported_inputs(spec, b, seed + 10 + t, steps=t)
               for b, t in ((2, 1), (3, spec.seq_len + 3))] if is_sequence(spec) else []
    set_deterministic(frameworks)
    # The native outputs, once per framework: every format of that framework is compared with them.
    references = {fw: [forward(fw, build(fw, spec, state), x) for x in batches + fresh] for fw in frameworks}
    other_lengths = {}  # framework -> native outputs at the other lengths, computed when first needed
    results, onnx_outputs = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(out_dir or scratch)
        for format, supported in FORMATS.items():
            for framework in (f for f in supported if f in frameworks):
                time_axis = None
                try:
                    path = export(framework, spec, default_path(out_dir, name, framework, format), format,
                                  state, force=True)
                    time_axis = _time_axis(path, spec)
                    inputs, reference = batches + fresh, references[framework]
                    if lengths and time_axis is None:
                        if framework not in other_lengths:
                            model = build(framework, spec, state)
                            other_lengths[framework] = [forward(framework, model, x) for x in lengths]
                        inputs, reference = inputs + lengths, reference + other_lengths[framework]
                    runs = [[run_exported(path, x, optimize=optimize) for x in inputs]
                            for optimize in ((True, False) if format == "onnx" else (True,))]
                    if format == "onnx":
                        onnx_outputs[framework] = runs[0][:len(batches + fresh)]  # the inputs every file takes
                    worst = max(_worst(out, ref) for run in runs for out, ref in zip(run, reference))
                    results.append(ExportResult(name, framework, format, worst, time_axis=time_axis))
                except ParityError as err:
                    results.append(ExportResult(name, framework, format, None, str(err).splitlines()[0],
                                                time_axis=time_axis))
        for a, b in itertools.combinations(onnx_outputs, 2):
            worst = max(_worst(x, y) for x, y in zip(onnx_outputs[a], onnx_outputs[b]))
            results.append(ExportResult(name, f"{a} vs {b}", "onnx", worst))
    return results


def support_matrix(names=None, preset: str = "tiny") -> list[ExportResult]:
    """Every architecture given, by default every exportable one (encoder-decoders are refused)."""
    return [r for name in (names or exportable_architectures()) for r in verify_architecture(name, preset)]


def matrix_markdown(results: list[ExportResult]) -> str:
    """Architecture × (framework, format) table of max error relative to scale vs native."""
    columns = [(fw, fmt) for fmt, fws in FORMATS.items() for fw in fws]
    columns += [(f"{a} vs {b}", "onnx") for a, b in itertools.combinations(FRAMEWORKS, 2)]
    cells = {(r.architecture, r.framework, r.format): r for r in results}
    header = "| architecture | " + " | ".join(f"{fw} {fmt}" if "vs" not in fw else f"ONNX {fw}"
                                              for fw, fmt in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name in dict.fromkeys(r.architecture for r in results):
        row = []
        for fw, fmt in columns:
            result = cells.get((name, fw, fmt))
            if result is None:
                row.append("–")
            elif result.error:
                row.append(f"✗ {result.error}")
            else:
                fixed = f" (T={result.time_axis})" if result.time_axis is not None else ""
                row.append(f"{'✓' if result.passed else '✗'} {result.max_rel:.1e}{fixed}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
