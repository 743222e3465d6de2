"""Markdown reports with PNG plots from any set of evaluation results.

A result is the JSON that ``vital eval vqa --json``, ``vital eval
chat-summary --json`` or ``vital eval winrate --json`` printed, saved to a
file; its kind is recognised from its keys.  Results of one kind are shown
side by side, one bar colour per result::

    write_report([("ours", "ours.vqa.json"), ("baseline", "base.vqa.json")], "report/")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vital.errors import InputError

VQA_COLUMNS = (
    ("recall", "open recall"),
    ("open_accuracy", "open accuracy"),
    ("closed_accuracy", "closed accuracy"),
    ("f1", "open F1"),
    ("exact_match", "exact match"),
    ("bleu_1", "BLEU-1"),
)


@dataclass(frozen=True)
class Result:
    name: str
    kind: str  # "vqa", "chat" or "winrate"
    data: dict[str, Any]


def result_kind(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if "n_open" in data and "closed_accuracy" in data:
        return "vqa"
    if "model_a" in data and isinstance(data.get("overall"), dict) and "win_rate" in data["overall"]:
        return "winrate"
    if isinstance(data.get("overall"), dict) and "relative_score" in data["overall"]:
        return "chat"
    return None


def load_result(path: str | Path, name: str | None = None) -> Result:
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    kind = result_kind(data)
    if kind is None:
        raise InputError(
            "not an evaluation result (expected the --json output of vital eval vqa, chat-summary, winrate)",
            path=path,
        )
    return Result(name or path.name.removesuffix(".json"), kind, data)


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _bars(
    path: Path,
    groups: Sequence[str],
    series: dict[str, list[float | None]],
    *,
    ylabel: str,
    title: str,
    errors: dict[str, list[tuple[float, float]]] | None = None,
) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series (None leaves a gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(1, len(series))
    wide = 0.6 * len(groups) * max(1, len(series)) ** 0.5 + 2
    figure, axes = plt.subplots(figsize=(min(14.0, max(6.0, wide)), 4))
    for index, (name, values) in enumerate(series.items()):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        heights = [value if value is not None else float("nan") for value in values]  # None: no bar
        yerr = None
        if errors and name in errors:
            yerr = [
                [max(0.0, h - low) for h, (low, _) in zip(heights, errors[name], strict=True)],
                [max(0.0, high - h) for h, (_, high) in zip(heights, errors[name], strict=True)],
            ]
        axes.bar(positions, heights, width=width, label=name, yerr=yerr, capsize=3 if yerr else 0)
    axes.set_xticks(range(len(groups)))
    axes.set_xticklabels(
        groups, rotation=30 if len(groups) > 5 else 0, ha="right" if len(groups) > 5 else "center"
    )
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_ylim(0, max(100.0, *(v or 0 for values in series.values() for v in values)) * 1.05)
    axes.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _vqa_section(results: list[Result], out: Path) -> list[str]:
    lines = ["## Medical VQA", ""]
    lines += _table(
        ["result", *(label for _, label in VQA_COLUMNS), "n open", "n closed"],
        [
            [
                r.name,
                *(_number(r.data.get(key)) for key, _ in VQA_COLUMNS),
                str(r.data["n_open"]),
                str(r.data["n_closed"]),
            ]
            for r in results
        ],
    )
    headline = ("recall", "closed_accuracy", "f1", "open_accuracy")
    _bars(
        out / "vqa_overall.png",
        ["open recall", "closed accuracy", "open F1", "open accuracy"],
        {r.name: [r.data.get(key) for key in headline] for r in results},
        ylabel="%",
        title="Medical VQA",
    )
    lines += ["![Medical VQA](vqa_overall.png)", ""]
    categories: list[str] = []
    for result in results:
        categories += [c for c in result.data.get("breakdown", {}) if c not in categories]
    for category in categories:
        labels: list[str] = []
        for result in results:
            labels += [
                label for label in result.data.get("breakdown", {}).get(category, {}) if label not in labels
            ]
        title = category.replace("_", " ")
        lines += [f"### By {title}", ""]
        rows = []
        for label in labels:
            cells = []
            for result in results:
                metrics = result.data.get("breakdown", {}).get(category, {}).get(label)
                cells.append(
                    "-"
                    if metrics is None
                    else f"{_number(metrics['recall'])} / {_number(metrics['closed_accuracy'])}"
                )
            rows.append([label, *cells])
        lines += _table([title, *(f"{r.name} (open recall / closed acc.)" for r in results)], rows)
        for key, what in (("recall", "open recall"), ("closed_accuracy", "closed accuracy")):
            image = f"vqa_{category}_{key}.png"
            series = {
                r.name: [
                    r.data.get("breakdown", {}).get(category, {}).get(label, {}).get(key) for label in labels
                ]
                for r in results
            }
            _bars(out / image, labels, series, ylabel=f"{what} (%)", title=f"{what} by {title}")
            lines += [f"![{what} by {title}]({image})", ""]
    return lines


def _chat_section(results: list[Result], out: Path) -> list[str]:
    categories: list[str] = []
    for result in results:
        categories += [c for c in result.data if c not in categories]
    lines = ["## Open visual chat (judged against the reference answer)", ""]
    lines += [
        "Relative score = mean over questions of model score / reference score, x 100 "
        "(n questions in brackets).",
        "",
    ]
    rows = [
        [
            category,
            *(
                "-"
                if category not in r.data
                else f"{r.data[category]['relative_score']:.1f} ({r.data[category]['n']})"
                for r in results
            ),
        ]
        for category in categories
    ]
    lines += _table(["category", *(r.name for r in results)], rows)
    series = {r.name: [r.data.get(c, {}).get("relative_score") for c in categories] for r in results}
    _bars(
        out / "chat_relative.png",
        categories,
        series,
        ylabel="relative score (%)",
        title="Relative score per question type and domain",
    )
    return lines + ["![relative scores](chat_relative.png)", ""]


def _winrate_section(results: list[Result], out: Path) -> list[str]:
    lines = ["## Win rate (pairwise, both orders; a flip is a tie)", ""]
    rows = []
    for r in results:
        overall = r.data["overall"]
        rows.append(
            [
                f"{r.data['model_a']} vs {r.data['model_b']}",
                str(overall["wins"]),
                str(overall["ties"]),
                str(overall["losses"]),
                f"{overall['win_rate']:.1f} [{overall['ci_low']:.1f}, {overall['ci_high']:.1f}]",
                _number(r.data.get("order_agreement")),
            ]
        )
    lines += _table(
        ["A vs B", "A wins", "ties", "B wins", "win rate of A, % [95% CI]", "order agreement %"], rows
    )
    categories = ["overall"]
    for result in results:
        categories += [c for c in result.data.get("by_category", {}) if c not in categories]

    def cell(result: Result, category: str) -> dict[str, Any] | None:
        return result.data["overall"] if category == "overall" else result.data["by_category"].get(category)

    series, errors = {}, {}
    for r in results:
        label = f"{r.data['model_a']} vs {r.data['model_b']}"
        cells = [cell(r, category) for category in categories]
        series[label] = [c["win_rate"] if c else None for c in cells]
        errors[label] = [(c["ci_low"], c["ci_high"]) if c else (0.0, 0.0) for c in cells]
    _bars(
        out / "winrate.png",
        categories,
        series,
        ylabel="win rate of A (%)",
        title="Win rate with 95% bootstrap interval",
        errors=errors,
    )
    return lines + ["![win rate](winrate.png)", ""]


def write_report(
    results: Sequence[tuple[str | None, str | Path] | str | Path],
    out: str | Path,
    *,
    title: str = "Evaluation report",
) -> Path:
    """Write ``out/report.md`` and its PNG plots; ``results`` are paths or ``(name, path)`` pairs."""
    loaded = []
    for entry in results:
        name, path = entry if isinstance(entry, tuple) else (None, entry)
        loaded.append(load_result(path, name))
    if not loaded:
        raise InputError("no results given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    sections = (("vqa", _vqa_section), ("chat", _chat_section), ("winrate", _winrate_section))
    for kind, section in sections:
        group = [result for result in loaded if result.kind == kind]
        if group:
            lines += section(group, out)
    from vital.jsonl import atomic_writer

    report = out / "report.md"
    with atomic_writer(report) as handle:
        handle.write("\n".join(lines))
    return report
