"""Render saved benchmark results: a comparison table per device and matplotlib figures, written
into docs/benchmarks.md between `<!-- bench-report:start -->` and `<!-- bench-report:end -->`."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from parity.errors import InputError

START, END = "<!-- bench-report:start -->", "<!-- bench-report:end -->"
FRAMEWORK_ORDER = ("torch", "keras", "jax")


def check_markers(text: str, start: str, end: str, page) -> None:
    """A generated section of a docs page sits between two marker comments; both must be there."""
    if start not in text or end not in text:
        raise InputError(f"{page}: expected the markers {start} and {end}")


def splice(text: str, start: str, end: str, section: str) -> str:
    """`text` with everything between the `start` and `end` markers replaced by `section`."""
    return text[:text.index(start) + len(start)] + "\n" + section + "\n" + text[text.index(end):]


def _rate(samples_per_s: float) -> str:
    """Whole samples from 100/s up, three significant digits below (GPT-2 trains at 0.16/s)."""
    return f"{samples_per_s:,.0f}" if samples_per_s >= 100 else f"{samples_per_s:.3g}"


def comparison_table(rows: list[dict]) -> str:
    """Markdown: samples/s (median, IQR as % of the median) per framework, and the ratio of the
    fastest to each, for every (architecture, dtype, batch, task, mode); float32 unless marked bf16."""
    groups = defaultdict(dict)
    for row in rows:
        key = (row["architecture"], row["preset"], row.get("dtype", "float32"), row["batch"], row["task"], row["mode"])
        groups[key][row["framework"]] = row
    lines = ["| architecture | batch | task | mode | torch | keras | jax | slowest / fastest |",
             "|---|---|---|---|---|---|---|---|"]
    for (arch, preset, dtype, batch, task, mode), by_framework in sorted(groups.items()):
        rates = {fw: r["samples_per_s"] for fw, r in by_framework.items()}
        fastest = max(rates.values())
        cells = []
        for fw in FRAMEWORK_ORDER:
            row = by_framework.get(fw)
            if row is None:
                cells.append("–")
                continue
            mark = "**" if rates[fw] == fastest else ""
            cells.append(f"{mark}{_rate(row['samples_per_s'])}{mark} ±{100 * row['iqr_s'] / row['median_s']:.0f}% "
                         f"({row['achieved_gflops']:.1f} GF/s)")
        label = f"{arch} ({preset})" + ("" if dtype == "float32" else f" {dtype}")
        lines.append(f"| {label} | {batch} | {task} | {mode} | " + " | ".join(cells)
                     + f" | {fastest / min(rates.values()):.2f}× |")
    return "\n".join(lines)


def _throughput_figure(rows, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The batch size measured in the most configurations (the scaling runs add compiled-only sizes).
    rows = [r for r in rows if r.get("dtype", "float32") == "float32"]  # bf16 rows: in the table
    counts = Counter(r["batch"] for r in rows if r["task"] == task)
    batch = max(counts, key=lambda b: (counts[b], b))
    chosen = [r for r in rows if r["task"] == task and r["batch"] == batch]
    architectures = sorted({r["architecture"] for r in chosen})
    bars = [(fw, mode) for fw in FRAMEWORK_ORDER for mode in ("eager", "compiled")]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(bars)
    for i, (fw, mode) in enumerate(bars):
        values = [next((r["samples_per_s"] for r in chosen if r["architecture"] == a and r["framework"] == fw
                        and r["mode"] == mode), 0) for a in architectures]
        ax.bar([j + i * width for j in range(len(architectures))], values, width, label=f"{fw} {mode}",
               hatch="//" if mode == "compiled" else None, color=f"C{FRAMEWORK_ORDER.index(fw)}",
               alpha=1.0 if mode == "compiled" else 0.55)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(architectures))], architectures)
    ax.set_yscale("log")
    ax.set_ylabel("samples / s (log)")
    ax.set_title(f"{task}, batch {batch}, {chosen[0]['device']}")
    ax.legend(ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scaling_figure(rows, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(list)
    for r in (r for r in rows if r.get("dtype", "float32") == "float32"):
        series[(r["architecture"], r["task"], r["framework"], r["mode"])].append((r["batch"], r["samples_per_s"]))
    series = {k: sorted(v) for k, v in series.items() if len(v) >= 3}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (arch, task, fw, mode), points in sorted(series.items()):
        ax.plot(*zip(*points), marker="o", linestyle="-" if mode == "compiled" else "--",
                color=f"C{FRAMEWORK_ORDER.index(fw)}", label=f"{arch} {task} {fw} {mode}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples / s")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render(rows: list[dict], page: Path, figures: Path) -> str:
    """Write the report section of `page` (and its figures); returns the section."""
    if not rows:
        raise InputError("report: no benchmark results found (run `parity bench ... --save` first)")
    text = page.read_text(encoding="utf-8") if page.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    check_markers(text, START, END, page)
    figures.mkdir(parents=True, exist_ok=True)
    sections = []
    for device in sorted({r["device"] for r in rows}):
        device_rows = [r for r in rows if r["device"] == device]
        slug = device.lower()
        sections.append(f"### {device}\n\n{comparison_table(device_rows)}\n")
        for task in sorted({r["task"] for r in device_rows}):
            figure = figures / f"throughput-{task}-{slug}.png"
            _throughput_figure(device_rows, figure, task)
            sections.append(f"![{task} throughput on {device}]({figure.relative_to(page.parent).as_posix()})\n")
        scaling = figures / f"scaling-{slug}.png"
        if _scaling_figure(device_rows, scaling):
            sections.append(f"![scaling with batch size on {device}]({scaling.relative_to(page.parent).as_posix()})\n")
    section = "\n".join(sections)
    page.write_text(splice(text, START, END, section), encoding="utf-8")
    return section
