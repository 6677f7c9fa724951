"""Run one spec in several frameworks from one canonical state and measure how far apart they are.

`compare` checks, for every pair of frameworks: the outputs, the loss, the gradient of every
parameter, and (in training mode) the updated batch-norm buffers; with `trace=True` also every
module's output, in forward order, and names the first module where the frameworks diverge.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from parity import tolerances
from parity.errors import InputError
from parity.frameworks import (FRAMEWORKS, build, export_state, forward, load_state, loss_and_grads,
                               set_deterministic)
from parity.specs import Spec, spec as make_spec
from parity.state import init_state, layout


@dataclass(frozen=True)
class Check:
    kind: str  # output | loss | gradient | buffer | trace
    name: str  # output name, canonical parameter/buffer name, or module path
    pair: tuple[str, str]
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.max_rel <= self.tolerance)


@dataclass
class Report:
    architecture: str
    preset: str | None
    dtype: str
    train: bool
    frameworks: tuple[str, ...]
    spec: dict
    checks: list[Check] = field(default_factory=list)
    trace_order: list[str] = field(default_factory=list)
    first_divergence: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """All outputs, losses, gradients and buffers within tolerance (traces are diagnostics)."""
        return all(c.passed for c in self.checks if c.kind != "trace")

    def worst(self, kind: str, pair: tuple[str, str]) -> Check | None:
        """The check of this kind and pair with the largest relative error."""
        candidates = [c for c in self.checks if c.kind == kind and c.pair == pair]
        return max(candidates, key=lambda c: c.max_rel / c.tolerance, default=None)

    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations(self.frameworks, 2))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        for check, raw in zip(self.checks, data["checks"]):
            raw["passed"] = check.passed
        return data

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self):
        """A rich table: per pair, the worst output, loss, gradient and buffer errors."""
        from rich.table import Table

        title = (f"{self.architecture} ({self.preset or 'custom'}) {self.dtype} "
                 f"{'train' if self.train else 'eval'}: {'PASS' if self.passed else 'FAIL'}")
        table = Table(title=title)
        for column in ("check", "worst entry", "pair", "max abs", "max rel", "tolerance", ""):
            table.add_column(column, justify="right" if column.startswith(("max", "tol")) else "left")
        for kind in ("output", "loss", "gradient", "buffer"):
            for pair in self.pairs():
                check = self.worst(kind, pair)
                if check is not None:
                    table.add_row(kind, check.name, " vs ".join(pair), f"{check.max_abs:.2e}",
                                  f"{check.max_rel:.2e}", f"{check.tolerance:.0e}",
                                  "[green]ok[/]" if check.passed else "[bold red]FAIL[/]")
        return table


def example_batch(spec: Spec, batch_size: int = 8, seed: int = 0, dtype: str = "float32"):
    """Deterministic (inputs, targets) in the canonical layout for a spec: standard-normal inputs,
    uniform class labels (or 0/1 labels for the binary perceptron). Language models get uniform
    token ids and next-token targets plus random initial states. Recurrent layers get named
    inputs with random `lengths` (the first example full length, so padding is always exercised
    beside a full row) and random initial states, and a standard-normal target sequence.
    Encoder-decoders get PAD-padded source ids with such lengths, target ids (EOS or a word) and
    the teacher-forced `decoder_tokens` (BOS, then the targets without the last). Specs that
    declare their inputs (the transformers) make their own (`Spec.example_inputs`)."""
    if batch_size < 1:
        raise InputError(f"batch_size: expected a positive int, got {batch_size}")
    rng = np.random.default_rng([seed, 0xBA7C4])
    if spec.declared_inputs() is not None:  # a model that declares its inputs builds its examples
        return spec.example_inputs(rng, batch_size, dtype)
    inputs = rng.standard_normal((batch_size, *spec.input_shape)).astype(dtype)
    if "decoder_tokens" in spec.optional_inputs:  # an encoder-decoder, teacher-forced
        lengths = rng.integers(1, spec.source_len + 1, batch_size)
        lengths[0] = spec.source_len
        first = spec.EOS + 1  # ids after PAD, BOS, EOS
        tokens = rng.integers(first, spec.source_vocab_size, (batch_size, spec.source_len))
        tokens[np.arange(spec.source_len)[None, :] >= lengths[:, None]] = spec.PAD
        targets = rng.integers(spec.EOS, spec.target_vocab_size, (batch_size, spec.target_len))
        decoder_tokens = np.concatenate([np.full((batch_size, 1), spec.BOS), targets[:, :-1]], axis=1)
        inputs = {"tokens": tokens, "lengths": lengths, "decoder_tokens": decoder_tokens}
    elif spec.input_kind == "tokens":  # a language model: next-token targets, initial states carried in
        layers, hidden = spec.state_shape
        inputs = {"tokens": rng.integers(0, spec.vocab_size, (batch_size, spec.seq_len)),
                  **{name: rng.standard_normal((layers, batch_size, hidden)).astype(dtype)
                     for name in spec.optional_inputs}}
        targets = rng.integers(0, spec.vocab_size, (batch_size, spec.seq_len))
    elif spec.input_kind == "sequence":
        lengths = rng.integers(1, spec.seq_len + 1, batch_size)
        lengths[0] = spec.seq_len
        layers, hidden = spec.state_shape
        inputs = {"sequence": inputs, "lengths": lengths,
                  **{name: rng.standard_normal((layers, batch_size, hidden)).astype(dtype)
                     for name in spec.optional_inputs[1:]}}
        targets = rng.standard_normal((batch_size, spec.seq_len, spec.directions * hidden)).astype(dtype)
    elif spec.loss == "cross_entropy":
        targets = rng.integers(0, spec.num_classes, batch_size).astype(np.int64)
    else:
        targets = rng.integers(0, 2, (batch_size, 1)).astype(dtype)
    return inputs, targets


def _pairwise(kind, named_per_framework, tolerance, scale_per_framework=None):
    checks = []
    frameworks = list(named_per_framework)
    for a, b in itertools.combinations(frameworks, 2):
        for name in named_per_framework[a]:
            scale = None if scale_per_framework is None else scale_per_framework[a]
            max_abs, max_rel = tolerances.errors(named_per_framework[a][name], named_per_framework[b][name], scale)
            checks.append(Check(kind, name, (a, b), max_abs, max_rel, tolerance))
    return checks


def _without_flattened_maps(order: list[str], trace: dict, entries: dict) -> list[str]:
    """Drop the outputs between a flatten and the Linear after it (AlexNet's classifier Dropout):
    they are the feature map flattened C, H, W by torch and H, W, C channels-last, the same
    numbers in another order, which the `flatten_linear` layout row reorders only at the Linear."""
    flatten_linears = [n.removesuffix(".weight") for n, p in entries.items() if p.kind == "flatten_linear"]
    if not flatten_linears or flatten_linears[0] not in order:
        return order
    end = order.index(flatten_linears[0])
    return [p for i, p in enumerate(order) if not (i < end and np.ndim(trace[p]) == 2)]


def compare(name_or_spec, frameworks=FRAMEWORKS, preset: str | None = "tiny", dtype: str = "float32",
            seed: int = 0, train: bool = False, grads: bool = True, trace: bool = False,
            batch_size: int = 8) -> Report:
    """Build the spec in every framework from one state, run one batch, compare every pair."""
    frameworks = tuple(frameworks)
    if len(frameworks) < 2 or len(set(frameworks)) != len(frameworks):
        raise InputError(f"frameworks: expected at least two distinct names out of {list(FRAMEWORKS)}, "
                         f"got {list(frameworks)}")
    spec = name_or_spec if isinstance(name_or_spec, Spec) else make_spec(name_or_spec, preset)
    preset = None if isinstance(name_or_spec, Spec) else preset
    notes = []
    if train and spec.deterministic() != spec:
        notes.append(f"{spec.stochastic_rates()} set to 0 for the exact training-mode check: the three frameworks' "
                     f"random streams cannot match (tests check keep-rate and scaling)")
        spec = spec.deterministic()
    set_deterministic(frameworks)
    state = init_state(spec, seed, dtype, random_norms=True)
    inputs, targets = example_batch(spec, batch_size, seed, dtype)
    entries = layout(spec)

    outputs, traces, buffers, losses, gradients = {}, {}, {}, {}, {}
    for framework in frameworks:
        model = build(framework, spec, state)
        result = forward(framework, model, inputs, train=train, trace=trace)
        outputs[framework], traces[framework] = result if trace else (result, {})
        if train:
            after = export_state(framework, model)
            buffers[framework] = {n: after[n] for n, p in entries.items() if not p.trainable}
        if grads:
            if train:  # the forward pass moved the batch-norm buffers: start the gradient from `state` too
                load_state(framework, model, state)
            loss, gradients[framework] = loss_and_grads(framework, model, inputs, targets, train=train)
            losses[framework] = {"loss": np.asarray(loss)}

    report = Report(spec.architecture, preset, dtype, train, frameworks, spec.to_dict(), notes=notes)
    report.checks += _pairwise("output", outputs, tolerances.FORWARD[dtype].rtol)
    report.checks += _pairwise("loss", losses, tolerances.FORWARD[dtype].rtol)
    grad_scale = {f: max(float(np.max(np.abs(g))) for g in gradients[f].values()) for f in gradients}
    report.checks += _pairwise("gradient", gradients, tolerances.GRADIENT[dtype].rtol, grad_scale)
    report.checks += _pairwise("buffer", buffers, tolerances.BUFFER[dtype].rtol)
    if trace:
        # Modules every framework traced, in the first framework's execution order.
        common = [p for p in traces[frameworks[0]] if all(p in traces[f] for f in frameworks)]
        common = _without_flattened_maps(common, traces[frameworks[0]], entries)
        report.trace_order = common
        trace_checks = _pairwise("trace", {f: {p: traces[f][p] for p in common} for f in frameworks},
                                 tolerances.FORWARD[dtype].rtol)
        report.checks += trace_checks
        failing = {c.name for c in trace_checks if not c.passed}
        report.first_divergence = next((p for p in common if p in failing), None)
    return report
