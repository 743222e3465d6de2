"""Markdown reports with PNG plots from any set of evaluation results.

A result is the JSON that ``vital eval vqa --json``, ``chat-summary --json``,
``winrate --json`` or ``compare --json`` printed, saved to a file; its kind
is recognised from its keys.  Results of one kind are shown side by side,
one bar colour per result::

    vital.eval_report([("ours", "ours.vqa.json"), ("baseline", "base.vqa.json")], "report/")

Every number comes with its count, and with its 95 % interval when the
result has one (drawn as error bars).  A cell or bar with fewer than
``min_n`` questions is greyed in tables and left out of plots.  Breakdowns
are drawn per label set: VQA-RAD's organs and SLAKE's never share an axis;
only the explicitly mapped ``region`` breakdown puts both benchmarks on one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.jsonl import atomic_writer, input_file, utf8_text

VQA_COLUMNS = (
    ("recall", "open recall"),
    ("open_accuracy", "open accuracy"),
    ("closed_accuracy", "closed accuracy"),
    ("f1", "open F1"),
    ("exact_match", "exact match"),
    ("bleu_1", "BLEU-1"),
)
# The metrics plotted, and whose count (open or closed questions) each has.
VQA_PLOTTED = (
    ("recall", "open recall", "n_open"),
    ("closed_accuracy", "closed accuracy", "n_closed"),
    ("f1", "open F1", "n_open"),
    ("open_accuracy", "open accuracy", "n_open"),
)
BREAKDOWN_PLOTTED = (("recall", "open recall", "n_open"), ("closed_accuracy", "closed accuracy", "n_closed"))
COMPARE_PLOTTED = ("closed_accuracy", "recall", "open_accuracy", "f1")


@dataclass
class ReportConfig(StageConfig):
    """The report's title and the smallest group a number is shown for."""

    title: str = setting("Evaluation report", "Title of the report.")
    min_n: int = setting(10, "Cells and bars with fewer questions than this are greyed or left out.")

    def validate(self) -> None:
        if self.min_n < 0:
            raise InputError("must not be negative", field="min_n")


@dataclass(frozen=True)
class Result:
    name: str
    kind: str  # "vqa", "chat", "winrate" or "compare"
    data: dict[str, Any]


@dataclass
class Plot:
    """What one PNG shows: grouped bars with their intervals (``None``: no bar, or no interval) and counts."""

    path: Path
    title: str
    ylabel: str
    groups: list[str]
    series: dict[str, list[float | None]]
    errors: dict[str, list[list[float] | None]] = field(default_factory=dict)
    counts: dict[str, list[int | None]] = field(default_factory=dict)


@dataclass
class ReportResult:
    out: Path
    """The Markdown report; its plots are beside it."""
    plots: list[Plot]


def result_kind(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    if "n_open" in data and "closed_accuracy" in data:
        return "vqa"
    if "compare" in data and isinstance(data.get("comparisons"), list):
        return "compare"
    if "model_a" in data and isinstance(data.get("overall"), dict) and "win_rate" in data["overall"]:
        return "winrate"
    if isinstance(data.get("overall"), dict) and "relative_score" in data["overall"]:
        return "chat"
    return None


def load_result(path: str | Path, name: str | None = None) -> Result:
    path = input_file(path)
    try:
        data = json.loads(utf8_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    kind = result_kind(data)
    if kind is None:
        raise InputError(
            "not an evaluation result (expected the --json output of vital eval vqa, chat-summary, winrate "
            "or compare)",
            path=path,
        )
    _check_numbers(data, path)
    return Result(name or path.name.removesuffix(".json"), kind, data)


COUNTS = {"n", "n_open", "n_closed", "wins", "ties", "losses"}
NUMBERS = {key for key, _ in VQA_COLUMNS} | set(COMPARE_PLOTTED) | {
    "win_rate", "ci_low", "ci_high", "order_agreement", "relative_score", "reference_score", "model_score", "diff",
    "p_value"}


def _check_numbers(data: Any, path: Path, where: str = "") -> None:
    """The numbers the report draws, at any depth: counts are integers, the rest numbers or intervals
    (``[low, high]``); either may be null."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        name = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict) or (key not in COUNTS and key not in NUMBERS):
            _check_numbers(value, path, name)
            continue
        wanted = int if key in COUNTS else (int, float)
        values = value if isinstance(value, list) and key in NUMBERS else [value]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, wanted)) for v in values):
            raise InputError(f"expected {'an integer' if key in COUNTS else 'a number'}, found "
                             f"{type(value).__name__}", path=path, field=name)


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_interval(value: Any, interval: Any) -> str:
    if value is None:
        return "-"
    return _number(value) + (f" [{_number(interval[0])}, {_number(interval[1])}]" if interval else "")


def _cell(value: Any, interval: Any, n: int | None, min_n: int) -> str:
    """A table cell: the value, its interval and its n; greyed (italic, no value) below ``min_n``."""
    if n is None or n == 0:
        return "-"
    if n < min_n:
        return f"_n={n} < {min_n}_"
    return f"{_with_interval(value, interval)} (n={n})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def draw(plot: Plot) -> None:
    """Grouped bars, one group per entry of ``groups``, one bar per series; ``n`` written on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = plot.series
    width = 0.8 / max(1, len(series))
    wide = 0.6 * len(plot.groups) * max(1, len(series)) ** 0.5 + 2
    figure, axes = plt.subplots(figsize=(min(14.0, max(6.0, wide)), 4))
    highest = 0.0
    for index, (name, values) in enumerate(series.items()):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(plot.groups))]
        heights = [value if value is not None else float("nan") for value in values]  # None: no bar
        intervals = plot.errors.get(name) or [None] * len(values)
        # an interval that does not contain its value (a hand-edited result) is drawn from the value
        below = [max(0.0, h - i[0]) if i is not None and v is not None else 0.0
                 for h, i, v in zip(heights, intervals, values, strict=True)]
        above = [max(0.0, i[1] - h) if i is not None and v is not None else 0.0
                 for h, i, v in zip(heights, intervals, values, strict=True)]
        has_errors = any(i is not None for i in intervals)
        bars = axes.bar(positions, heights, width=width, label=name,
                        yerr=[below, above] if has_errors else None, capsize=3 if has_errors else 0)
        counts = plot.counts.get(name)
        if counts:
            labels = [f"n={n}" if n is not None and v is not None else "" for n, v in zip(counts, values, strict=True)]
            axes.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
        highest = max([highest, *(v + a for v, a in zip((v or 0.0 for v in values), above, strict=True))])
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_xticks(range(len(plot.groups)))
    rotate = len(plot.groups) > 5
    axes.set_xticklabels(plot.groups, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    axes.set_ylabel(plot.ylabel)
    axes.set_title(plot.title)
    lowest = min([0.0, *(i[0] for errors in plot.errors.values() for i in errors if i is not None),
                  *(v for values in series.values() for v in values if v is not None)])
    axes.set_ylim(lowest * 1.1, max(100.0 if lowest >= 0 else 0.0, highest) * 1.1 + 1)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")  # names the result even when it is the only one
    figure.tight_layout()
    figure.savefig(plot.path, dpi=110)
    plt.close(figure)


class _Writer:
    """Collects the report's lines and plots."""

    def __init__(self, out: Path, min_n: int) -> None:
        self.out, self.min_n = out, min_n
        self.lines: list[str] = []
        self.plots: list[Plot] = []

    def plot(self, name: str, title: str, ylabel: str, groups: list[str], series: dict[str, list[float | None]],
             errors: dict[str, list[list[float] | None]], counts: dict[str, list[int | None]]) -> None:
        """Add a plot; a value whose count is below ``min_n`` gets no bar."""
        for label, values in series.items():
            for index, n in enumerate(counts.get(label, [])):
                if n is None or n < self.min_n:
                    values[index] = None
        plot = Plot(self.out / f"{name}.png", title, ylabel, groups, series, errors, counts)
        draw(plot)
        self.plots.append(plot)
        self.lines += [f"![{title}]({plot.path.name})", ""]


def _vqa_section(results: list[Result], report: _Writer) -> None:
    report.lines += ["## Medical VQA", "", "Percent, with 95 % bootstrap intervals where the result has them.", ""]
    report.lines += _table(
        ["result", *(label for _, label in VQA_COLUMNS), "n open", "n closed"],
        [
            [
                r.name,
                *(_with_interval(r.data.get(key), r.data.get("ci95", {}).get(key)) for key, _ in VQA_COLUMNS),
                str(r.data["n_open"]),
                str(r.data["n_closed"]),
            ]
            for r in results
        ],
    )
    report.plot(
        "vqa_overall",
        "Medical VQA",
        "%",
        [label for _, label, _ in VQA_PLOTTED],
        {r.name: [r.data.get(key) for key, _, _ in VQA_PLOTTED] for r in results},
        {r.name: [r.data.get("ci95", {}).get(key) for key, _, _ in VQA_PLOTTED] for r in results},
        {r.name: [r.data.get(count) for _, _, count in VQA_PLOTTED] for r in results},
    )
    for (category, labels), members in _breakdown_groups(results).items():
        _breakdown(category, labels, members, report)


def _breakdown_groups(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    """``{(category, label set): results}``: only results whose labels come from one vocabulary share a table.

    A result without ``label_sets`` (saved by an older version) is a label set of its own.
    """
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        for category in result.data.get("breakdown", {}):
            labels = result.data.get("label_sets", {}).get(category) or f"{result.name} labels"
            groups.setdefault((category, labels), []).append(result)
    return groups


def _breakdown(category: str, label_set: str, results: list[Result], report: _Writer) -> None:
    labels: list[str] = []
    for result in results:
        labels += [label for label in result.data["breakdown"][category] if label not in labels]
    title = category.replace("_", " ")
    report.lines += [f"### By {title} ({label_set} labels)", ""]

    def cells(result: Result, key: str, count: str) -> list[str]:
        row = result.data["breakdown"][category]
        return [
            _cell(row[label].get(key), row[label].get("ci95", {}).get(key), row[label].get(count), report.min_n)
            if label in row else "-"
            for label in labels
        ]

    header = [title]
    columns = []
    for result in results:
        for key, what, count in BREAKDOWN_PLOTTED:
            header.append(f"{result.name}: {what}")
            columns.append(cells(result, key, count))
    report.lines += _table(header, [[label, *(column[i] for column in columns)] for i, label in enumerate(labels)])
    for key, what, count in BREAKDOWN_PLOTTED:
        cell = {r.name: [r.data["breakdown"][category].get(label, {}) for label in labels] for r in results}
        report.plot(
            f"vqa_{_slug(category)}_{_slug(label_set)}_{key}",
            f"{what} by {title} ({label_set} labels)",
            f"{what} (%)",
            labels,
            {name: [c.get(key) for c in row] for name, row in cell.items()},
            {name: [c.get("ci95", {}).get(key) for c in row] for name, row in cell.items()},
            {name: [c.get(count) for c in row] for name, row in cell.items()},
        )


def _chat_section(results: list[Result], report: _Writer) -> None:
    categories: list[str] = []
    for result in results:
        categories += [c for c in result.data if c not in categories]
    report.lines += ["## Open visual chat (judged against the reference answer)", ""]
    report.lines += [
        "Relative score = mean over questions of model score / reference score, x 100, with its 95 % bootstrap "
        "interval and the number of questions.",
        "",
    ]

    def row(result: Result, category: str) -> dict[str, Any]:
        return result.data.get(category, {})

    def interval(result: Result, category: str) -> Any:
        return row(result, category).get("ci95", {}).get("relative_score")

    report.lines += _table(
        ["category", *(r.name for r in results)],
        [
            [c, *(_cell(row(r, c).get("relative_score"), interval(r, c), row(r, c).get("n"), report.min_n)
                  for r in results)]
            for c in categories
        ],
    )
    report.plot(
        "chat_relative",
        "Relative score per question type and domain",
        "relative score (%)",
        categories,
        {r.name: [row(r, c).get("relative_score") for c in categories] for r in results},
        {r.name: [interval(r, c) for c in categories] for r in results},
        {r.name: [row(r, c).get("n") for c in categories] for r in results},
    )


def _winrate_section(results: list[Result], report: _Writer) -> None:
    report.lines += ["## Win rate (pairwise, both orders; a flip is a tie)", ""]
    rows = []
    for r in results:
        overall = r.data["overall"]
        rows.append(
            [
                f"{r.data['model_a']} vs {r.data['model_b']}",
                str(overall["wins"]),
                str(overall["ties"]),
                str(overall["losses"]),
                str(overall["n"]),
                _with_interval(overall["win_rate"], [overall["ci_low"], overall["ci_high"]]),
                _number(r.data.get("order_agreement")),
            ]
        )
    report.lines += _table(
        ["A vs B", "A wins", "ties", "B wins", "n", "win rate of A, % [95% CI]", "order agreement %"], rows
    )
    for key, what in (("by_benchmark", "benchmark"), ("by_category", "question type and domain")):
        groups = ["overall"]
        for result in results:
            groups += [c for c in result.data.get(key, {}) if c not in groups]
        if len(groups) == 1 and key == "by_benchmark":
            continue

        def cell(result: Result, group: str, key: str = key) -> dict[str, Any] | None:
            return result.data["overall"] if group == "overall" else result.data.get(key, {}).get(group)

        series, errors, counts = {}, {}, {}
        for r in results:
            label = f"{r.data['model_a']} vs {r.data['model_b']}"
            cells = [cell(r, group) for group in groups]
            series[label] = [c["win_rate"] if c else None for c in cells]
            errors[label] = [[c["ci_low"], c["ci_high"]] if c and c["ci_low"] is not None else None for c in cells]
            counts[label] = [c["n"] if c else None for c in cells]
        report.plot(f"winrate_{_slug(what)}", f"Win rate of A by {what}, with 95% bootstrap interval",
                    "win rate of A (%)", groups, series, errors, counts)


def _compare_section(results: list[Result], report: _Writer) -> None:
    report.lines += ["## Paired comparisons (B − A on the same questions)", ""]
    for result in results:
        a = result.data["a"]
        for comparison in result.data["comparisons"]:
            missing = comparison.get("missing", {})
            report.lines += [
                f"### {comparison['b']} vs {a} ({result.data['compare']}, {comparison['n']} questions compared; "
                f"left out: {missing.get('a', 0)} missing from A, {missing.get('b', 0)} missing from B)",
                "",
            ]
            rows = [
                [name, _number(m["a"], 2), _number(m["b"], 2), _number(m["diff"], 2),
                 f"[{_number(m['ci95'][0], 2)}, {_number(m['ci95'][1], 2)}]" if m["ci95"] else "-",
                 "-" if m["p_value"] is None else f"{m['p_value']:.3g}", m["test"], str(m["n"])]
                for name, m in comparison["metrics"].items()
            ]
            report.lines += _table(["metric", "A", "B", "B − A", "95% CI of B − A", "p", "test", "n"], rows)
        metrics = result.data["comparisons"][0]["metrics"] if result.data["comparisons"] else {}
        shown = [m for m in COMPARE_PLOTTED if m in metrics] if result.data["compare"] == "vqa" else list(metrics)
        report.plot(
            f"compare_{_slug(result.name)}",
            "B − A, with the 95% paired bootstrap interval",
            f"B − {a} (points)",
            shown,
            {c["b"]: [c["metrics"].get(m, {}).get("diff") for m in shown] for c in result.data["comparisons"]},
            {c["b"]: [c["metrics"].get(m, {}).get("ci95") for m in shown] for c in result.data["comparisons"]},
            {c["b"]: [c["metrics"].get(m, {}).get("n") for m in shown] for c in result.data["comparisons"]},
        )


def eval_report(
    results: Sequence[tuple[str | None, str | Path] | str | Path],
    out: str | Path,
    config: ReportConfig | None = None,
) -> ReportResult:
    """Write ``out/report.md`` and its PNG plots; ``results`` are paths or ``(name, path)`` pairs."""
    config = config or ReportConfig()
    loaded = []
    for entry in results:
        name, path = entry if isinstance(entry, tuple) else (None, entry)
        loaded.append(load_result(path, name))
    if not loaded:
        raise InputError("no results given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = _Writer(out, config.min_n)
    report.lines += [f"# {config.title}", ""]
    sections = (("vqa", _vqa_section), ("chat", _chat_section), ("winrate", _winrate_section),
                ("compare", _compare_section))
    for kind, section in sections:
        group = [result for result in loaded if result.kind == kind]
        if group:
            section(group, report)
    path = out / "report.md"
    with atomic_writer(path) as handle:
        handle.write("\n".join(report.lines))
    return ReportResult(path, report.plots)
