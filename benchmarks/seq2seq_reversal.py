"""Train Bahdanau and Luong attention models and the Transformer on digit reversal in PyTorch, Keras
and JAX from ONE canonical state, and compare what they learn.

For each architecture: parity.init_state once; parity.reversal.train_until in every framework on
the same stream of fresh minibatches (Adam, clip_norm 1, float32; no dropout in the Transformer:
the frameworks draw different masks) until held-out greedy exact
match reaches 95%; then a table (steps, final loss, greedy and beam-5 exact match, wall time),
the loss curves' agreement over the first steps, the fraction of held-out outputs identical
across frameworks (each framework's own trained model, and one trained state decoded in all
three), and an attention heat map of one held-out example. Results go to
benchmarks/results/<host>/seq2seq-reversal.json (see --out) and
docs/figures/seq2seq-attention-<architecture>.png.

    python benchmarks/seq2seq_reversal.py            # every architecture, every framework
    python benchmarks/seq2seq_reversal.py --architectures transformer \
        --out benchmarks/results/cpu-2core-AMD-EPYC/transformer-reversal.json
    python benchmarks/seq2seq_reversal.py --architectures seq2seq_luong --frameworks torch
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import parity  # noqa: E402
from parity import reversal  # noqa: E402
from parity.decoding import EOS, digit_reversal, plot_attention, token_labels  # noqa: E402

ARCHITECTURES = ("seq2seq_bahdanau", "seq2seq_luong", "transformer")
# The task and the model sizes: sources of 3..8 digits; recurrent: embedding 32, hidden 64,
# Bahdanau's alignment units 32; the Transformer: d_model 32, 4 heads, 2 + 2 layers, d_ff 64.
TASK = {"min_len": 3, "max_len": 8}
SIZES = {"seq2seq_bahdanau": {"embedding_dim": 32, "hidden_size": 64, "num_layers": 1, "attention_size": 32},
         "seq2seq_luong": {"embedding_dim": 32, "hidden_size": 64, "num_layers": 1},
         "transformer": {"d_model": 32, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
                         "dim_feedforward": 64, "dropout": 0.0}}
LEARNING_RATE = {"seq2seq_bahdanau": 3e-3, "seq2seq_luong": 3e-3, "transformer": 1e-3}
TRAINING = {"clip_norm": 1.0, "batch_size": 64, "max_steps": 1500, "eval_every": 50, "target": 0.95}
HELD_OUT = 500
LOSS_STEPS = 10  # loss curves compared over these first steps
SEEDS = {"state": 0, "train": 1, "held_out": 2}


def spec_of(architecture: str):
    return reversal.reversal_spec(architecture, max_len=TASK["max_len"], **SIZES[architecture])


def optimizer_of(architecture: str):
    return parity.optimizer("adam", lr=LEARNING_RATE[architecture], clip_norm=TRAINING["clip_norm"])


def run_architecture(architecture: str, frameworks, figures: Path | None) -> dict:
    spec = spec_of(architecture)
    state = parity.init_state(spec, SEEDS["state"])  # one canonical float32 state for every framework
    batches = reversal.training_batches(TRAINING["max_steps"], TRAINING["batch_size"], seed=SEEDS["train"], **TASK)
    held_out = digit_reversal(HELD_OUT, seed=SEEDS["held_out"], **TASK)
    runs, rows, greedy, beam = {}, [], {}, {}
    for framework in frameworks:
        run = reversal.train_until(framework, spec, state, optimizer_of(architecture), batches, held_out,
                                   target=TRAINING["target"], eval_every=TRAINING["eval_every"])
        start = time.perf_counter()
        greedy_match, greedy[framework] = reversal.evaluate(framework, run.model, held_out)
        beam_match, beam[framework] = reversal.evaluate(framework, run.model, held_out, beam_size=5)
        runs[framework] = run
        rows.append({"framework": framework, "steps": run.steps, "final_loss": run.losses[-1],
                     "greedy_exact_match": greedy_match, "beam5_exact_match": beam_match,
                     "train_seconds": run.seconds, "eval_seconds": time.perf_counter() - start,
                     "evaluations": run.evaluations})
        print(f"  {architecture} {framework}: {run.steps} steps, loss {run.losses[-1]:.4f}, greedy {greedy_match:.3f}, "
              f"beam-5 {beam_match:.3f}, {run.seconds:.1f} s", flush=True)
    result = {"architecture": architecture, "spec": spec.to_dict(), "rows": rows}
    if len(frameworks) > 1:
        steps = min(LOSS_STEPS, *(run.steps for run in runs.values()))
        curves = [runs[f].losses for f in frameworks]
        result["loss_curves_first_steps"] = {f: runs[f].losses[:steps] for f in frameworks}
        result["loss_max_relative_difference"] = {
            "steps": steps, "value": reversal.max_relative_difference(curves, steps)}
        result["identical_own_models"] = {"greedy": reversal.identical_fraction([greedy[f] for f in frameworks]),
                                          "beam5": reversal.identical_fraction([beam[f] for f in frameworks])}
        # One trained state (the first framework's) decoded in every framework: the same weights.
        shared = runs[frameworks[0]].state
        same = {f: parity.build(f, spec, shared) for f in frameworks}
        result["identical_same_state"] = {
            "state_from": frameworks[0],
            "greedy": reversal.identical_fraction([reversal.evaluate(f, same[f], held_out)[1] for f in frameworks]),
            "beam5": reversal.identical_fraction([reversal.evaluate(f, same[f], held_out, beam_size=5)[1]
                                                  for f in frameworks])}
    if figures is not None:
        first = frameworks[0]
        index = int(np.argmax(held_out.lengths))  # the longest held-out source
        n = int(held_out.lengths[index])
        decoded = greedy[first]
        emitted = list(decoded.sequences[index]) + ([EOS] if decoded.finished[index] else [])
        path = figures / f"seq2seq-attention-{architecture.removeprefix('seq2seq_')}.png"
        plot_attention(decoded.attention[index][:, :n], token_labels(held_out.tokens[index, :n]),
                       token_labels(emitted), path)
        result["figure"] = {"path": str(path.relative_to(ROOT)), "framework": first, "example": index}
    return result


def print_table(results: list[dict]) -> None:
    print(f"\n{'architecture':18} {'framework':9} {'steps':>5} {'loss':>8} {'greedy EM':>9} {'beam-5 EM':>9} "
          f"{'train s':>8}")
    for result in results:
        for row in result["rows"]:
            print(f"{result['architecture']:18} {row['framework']:9} {row['steps']:5d} {row['final_loss']:8.4f} "
                  f"{row['greedy_exact_match']:9.3f} {row['beam5_exact_match']:9.3f} {row['train_seconds']:8.1f}")
    for result in results:
        if "loss_max_relative_difference" in result:
            loss = result["loss_max_relative_difference"]
            print(f"{result['architecture']}: loss curves max relative difference over the first {loss['steps']} "
                  f"steps {loss['value']:.2e}; identical held-out outputs, own models: greedy "
                  f"{result['identical_own_models']['greedy']:.3f}, beam-5 {result['identical_own_models']['beam5']:.3f}; "
                  f"one state in every framework: greedy {result['identical_same_state']['greedy']:.3f}, "
                  f"beam-5 {result['identical_same_state']['beam5']:.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--frameworks", nargs="+", default=list(parity.FRAMEWORKS), choices=parity.FRAMEWORKS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/cpu-2core-AMD-EPYC/seq2seq-reversal.json")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs/figures")
    args = parser.parse_args(argv)
    parity.set_deterministic(args.frameworks)
    start = time.perf_counter()
    results = [run_architecture(a, args.frameworks, args.figures) for a in args.architectures]
    print_table(results)
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")
    report = {"host": {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()},
              "precision": "float32, TF32 off, jax_default_matmul_precision highest",
              "task": {**TASK, "held_out": HELD_OUT}, "sizes": {a: SIZES[a] for a in args.architectures},
              "training": {**TRAINING, "lr": {a: LEARNING_RATE[a] for a in args.architectures}}, "seeds": SEEDS, "total_seconds": total, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
