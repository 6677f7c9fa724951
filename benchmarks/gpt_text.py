"""Train a small character-level GPT on the shipped tiny-shakespeare text in PyTorch, Keras and JAX
from ONE canonical state, and sample from it.

parity.init_state once; parity.causal_lm.train in every framework on the same stream of random
windows (AdamW with transformers' warmup + cosine schedule, clip_norm 1, float32); then a table
(final loss, wall time), the loss curves' agreement over the first steps, and completions of one
prompt: greedy (identical text expected in every framework from one trained state: the torch
run's, loaded everywhere) and seeded top-k sampling. Results go to
benchmarks/results/<device>/gpt-text.json (see --out).

    python benchmarks/gpt_text.py                        # every framework
    python benchmarks/gpt_text.py --frameworks torch --steps 100
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import parity  # noqa: E402
from parity import causal_lm  # noqa: E402
from parity.bench import device_label  # noqa: E402
from parity.reversal import max_relative_difference  # noqa: E402
from parity.text import Vocabulary, load_text  # noqa: E402

SIZES = {"seq_len": 128, "n_embd": 64, "n_layer": 2, "n_head": 4}
TRAINING = {"steps": 2000, "batch_size": 16, "lr": 3e-3, "warmup_steps": 100, "weight_decay": 0.1,
            "clip_norm": 1.0}
PROMPT = "ROMEO:\n"
COMPLETION = 120  # characters: prompt + completion stay within the trained positions (seq_len)
LOSS_STEPS = 10  # loss curves compared over these first steps
SEEDS = {"state": 0, "batches": 1, "sample": 2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="torch,keras,jax")
    parser.add_argument("--steps", type=int, default=TRAINING["steps"])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / device_label("cpu") / "gpt-text.json")
    args = parser.parse_args(argv)
    frameworks = args.frameworks.split(",")
    parity.set_deterministic(frameworks)

    text = load_text()
    vocabulary = Vocabulary.from_text(text)
    spec = causal_lm.char_gpt_spec(vocabulary, **SIZES)
    optimizer = parity.optimizer("adamw", lr=TRAINING["lr"], weight_decay=TRAINING["weight_decay"],
                                 clip_norm=TRAINING["clip_norm"], schedule="warmup_cosine",
                                 warmup_steps=min(TRAINING["warmup_steps"], args.steps // 10 + 1), total_steps=args.steps)
    state = parity.init_state(spec, SEEDS["state"])
    batches = causal_lm.text_batches(vocabulary.encode(text), args.steps, TRAINING["batch_size"], spec.seq_len,
                                     SEEDS["batches"])
    runs = {}
    for framework in frameworks:
        run = causal_lm.train(framework, spec, state, optimizer, batches)
        runs[framework] = run
        print(f"{framework}: final loss {np.mean(run.losses[-50:]):.3f} (mean of the last 50 steps), "
              f"{run.seconds:.0f} s", flush=True)

    trained = runs[frameworks[0]].state  # one trained state, decoded everywhere
    completions = {}
    for framework in frameworks:
        model = parity.build(framework, spec, trained)
        completions[framework] = {
            "greedy": causal_lm.complete(framework, model, vocabulary, PROMPT, COMPLETION),
            "top_k_10": causal_lm.complete(framework, model, vocabulary, PROMPT, COMPLETION, do_sample=True,
                                           seed=SEEDS["sample"], top_k=10),
            "own_state_greedy": causal_lm.complete(framework, runs[framework].model, vocabulary, PROMPT, COMPLETION),
        }
        print(f"--- {framework}, greedy from the {frameworks[0]} state:\n{PROMPT}{completions[framework]['greedy']}")
    result = {
        "spec": spec.to_dict(), "optimizer": optimizer.hyper_parameters() | {"schedule": optimizer.schedule},
        "training": {**TRAINING, "steps": args.steps}, "seeds": SEEDS, "prompt": PROMPT,
        "runs": {fw: {"final_loss_mean_last_50": float(np.mean(r.losses[-50:])), "seconds": r.seconds,
                      "losses": r.losses} for fw, r in runs.items()},
        "loss_curve_max_relative_difference": (max_relative_difference([r.losses for r in runs.values()], LOSS_STEPS)
                                               if len(runs) > 1 else None),
        "completions": completions,
        "same_greedy_text_everywhere": len({c["greedy"] for c in completions.values()}) == 1,
        "same_sampled_text_everywhere": len({c["top_k_10"] for c in completions.values()}) == 1,
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
