"""Prove exports: every artifact, run in its own runtime, matches the native model.

For each architecture × framework × format: export from one canonical state, run the artifact
at batch 1 and batch 7 (the batch dimension is dynamic), and for ONNX with ONNX Runtime's graph
optimizations both on and off; compare with the native framework's forward. The three ONNX
files of one architecture are also compared with each other on the same inputs.
"""
from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from parity import tolerances
from parity.compare import example_batch
from parity.errors import ParityError
from parity.export import FORMATS, default_path, export
from parity.frameworks import FRAMEWORKS, build, forward, set_deterministic
from parity.runtime import run_exported
from parity.specs import architectures, spec as make_spec
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

    @property
    def passed(self) -> bool:
        return self.error is None and self.max_rel is not None and self.max_rel <= TOLERANCE.rtol


def _worst(outputs_a: dict, outputs_b: dict) -> float:
    if set(outputs_a) != set(outputs_b):
        return float("inf")
    return max(tolerances.errors(outputs_a[k], outputs_b[k])[1] for k in outputs_a)


def verify_architecture(name: str, preset: str = "tiny", out_dir=None, seed: int = 0,
                        frameworks=FRAMEWORKS) -> list[ExportResult]:
    """Export `name` in every supported framework/format and check every artifact."""
    spec = make_spec(name, preset)
    state = init_state(spec, seed, "float32", random_norms=True)
    batches = [example_batch(spec, b, seed + b)[0] for b in BATCH_SIZES]
    set_deterministic(frameworks)
    # The native outputs, once per framework: every format of that framework is compared with them.
    references = {fw: [forward(fw, build(fw, spec, state), x) for x in batches] for fw in frameworks}
    results, onnx_outputs = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(out_dir or scratch)
        for format, supported in FORMATS.items():
            for framework in (f for f in supported if f in frameworks):
                try:
                    path = export(framework, spec, default_path(out_dir, name, framework, format), format,
                                  state, force=True)
                    runs = [[run_exported(path, x, optimize=optimize) for x in batches]
                            for optimize in ((True, False) if format == "onnx" else (True,))]
                    if format == "onnx":
                        onnx_outputs[framework] = runs[0]
                    worst = max(_worst(out, ref) for run in runs for out, ref in zip(run, references[framework]))
                    results.append(ExportResult(name, framework, format, worst))
                except ParityError as err:
                    results.append(ExportResult(name, framework, format, None, str(err).splitlines()[0]))
        for a, b in itertools.combinations(onnx_outputs, 2):
            worst = max(_worst(x, y) for x, y in zip(onnx_outputs[a], onnx_outputs[b]))
            results.append(ExportResult(name, f"{a} vs {b}", "onnx", worst))
    return results


def support_matrix(names=None, preset: str = "tiny") -> list[ExportResult]:
    return [r for name in (names or architectures()) for r in verify_architecture(name, preset)]


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
                row.append(f"{'✓' if result.passed else '✗'} {result.max_rel:.1e}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
