"""``DIR/report.html``: one page about a round, drawn from the files its stages wrote.

>>> write_report(Path("my-round"))   # my-round/report.html, plots in my-round/report/
PosixPath('my-round/report.html')

The page reads only the round's fixed-name files (``run.json``,
``figures.jsonl``, ``candidates.jsonl``, ``scores.jsonl``, ``selected.json``,
``tuned/log.jsonl``, ``eval/vqa-*.json``, ...) and has one section per stage,
each built by one function of :data:`SECTIONS` from a :class:`RoundFiles`.
A section whose files are absent says which ones; a section that cannot be
read (a damaged file, a format this code does not know) says why, and the
rest of the page is still written.

It stays fast on large rounds: JSONL files are streamed once, records are
kept only as ids and numbers, and the examples read a bounded number of
records in a second pass.  The page is self-contained: plots and thumbnails
are PNG files in ``DIR/report/``, the CSS is inline, there is no script and
nothing is fetched from the network.  Everything taken from the data
(captions, conversations, names) is HTML-escaped by the template.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sqlite3
import statistics
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

from vital.conversation import strip_image_token
from vital.errors import InputError
from vital.jsonl import atomic_writer, iter_json_lines, iter_json_objects, warn
from vital.records import resolve_image

EXAMPLES = 4
"""Figures shown in the examples section."""
TURN_CHARACTERS = 700
"""A conversation turn longer than this is cut in the examples."""
THUMBNAIL_PIXELS = 220
DEFAULT_MIN_N = 10
"""Breakdown cells with fewer questions are greyed (``[eval] min_n`` in vital.toml overrides it; the same default
as ``vital eval vqa --min-n``)."""
BREAKDOWN_LABELS = 24
"""Labels plotted per breakdown category (the largest by count; the table lists them all)."""
FAILURE_REASONS = 5
"""Most frequent failure reasons listed per file."""

BASE_COLOUR, TUNED_COLOUR, OTHER_COLOURS = "#2563a8", "#d9822b", ("#3f8f5a", "#8e5ea2", "#b5423b", "#6b7b8c")
KEPT_COLOUR, DROPPED_COLOUR, CUT_COLOUR = "#3f8f5a", "#a7b1bc", "#b5423b"
NO_DOMAIN = "other"
"""The domain of a figure without domains, as selection counts it (vital.selection.policies.candidate_domain)."""


# --- what the template shows -------------------------------------------------------------------------------


@dataclass
class Cell:
    text: str
    cls: str = ""
    """CSS classes: ``num`` (right-aligned), ``muted`` (greyed: too few questions), ``bad``, ``good``."""
    title: str = ""
    badge: str = ""
    """A stage status: the text is shown as a coloured badge."""
    ci: str = ""
    """An interval shown after the text (``[low, high]``), kept on one line."""


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""
    wide: bool = False
    """Span the page (tables of more than five columns always do)."""


@dataclass
class Plot:
    kind: ClassVar[str] = "plot"
    src: str
    """Path relative to report.html."""
    alt: str
    caption: str = ""
    wide: bool = False


@dataclass
class Turn:
    speaker: str
    text: str


@dataclass
class Shown:
    """One conversation of an example: why it is shown, its id and score, its turns."""

    label: str
    candidate_id: str
    score: str
    turns: list[Turn]
    tone: str = ""
    """``good`` for the kept (or best-scored) conversation, ``poor`` for the other."""


@dataclass
class Example:
    figure_id: str
    domain: str
    caption: str
    thumbnail: str | None
    thumbnail_problem: str = ""
    conversations: list[Shown] = field(default_factory=list)


@dataclass
class FileState:
    name: str
    present: bool
    detail: str = ""


@dataclass
class Section:
    key: str
    """The HTML anchor, and the run.json stage the section belongs to (when it is one)."""
    title: str
    intro: str = ""
    status: str | None = None
    """The stage's status in run.json."""
    files: list[FileState] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    panels: list[Plot | Table] = field(default_factory=list)
    """Plots and tables in reading order (two narrow ones share a row)."""
    failures: list[Table] = field(default_factory=list)
    """The commonest reasons in the stage's failures files (shown after the panels)."""
    notes: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    absent: str = ""
    """Set when there is nothing to show: which files are missing."""
    error: str = ""
    """Set when the section could not be drawn."""


# --- formatting ---------------------------------------------------------------------------------------------


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _p_value(value: Any) -> str:
    if isinstance(value, int | float) and 0 <= value < 0.0001:
        return "< 0.0001"
    return _num(value, 4)


def _interval(ci: Any, digits: int = 1) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
        return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return ""


def _value_cell(value: Any, ci: Any = None, n: int | None = None, min_n: int = 0) -> Cell:
    """A metric with its interval; greyed when it rests on fewer than ``min_n`` questions."""
    interval = _interval(ci) if value is not None else ""
    if n is not None and n < min_n:
        return Cell(_num(value), "num muted", f"only {n} questions (fewer than {min_n})", ci=interval)
    return Cell(_num(value), "num", ci=interval)


def _counts_text(counts: dict[str, Any]) -> str:
    """A run.json ``counts`` object in one line: its numbers and words (breakdowns are in the stages' sections)."""
    return "; ".join(f"{key.replace('_', ' ')} {_num(value, 2)}" for key, value in counts.items()
                     if value is not None and not isinstance(value, dict | list))


def _time(value: Any) -> str:
    """An ISO time from run.json, shorter: ``2025-01-01 10:05 UTC``."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "–")
    zone = "UTC" if moment.utcoffset() is not None and not moment.utcoffset() else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M} {zone}".strip()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- reading the round ---------------------------------------------------------------------------------------


def _domain(domains: list[str]) -> str:
    return domains[0] if domains else NO_DOMAIN


def _as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else ``{}`` (a field missing from a file, or of another shape)."""
    return value if isinstance(value, dict) else {}


@dataclass
class FigureSummary:
    count: int = 0
    with_image: int = 0
    domains_of: dict[str, list[str]] = field(default_factory=dict)
    per_domain: Counter = field(default_factory=Counter)
    """Figures per domain; a figure with several domains counts in each."""


@dataclass
class UsageTotals:
    candidates: int = 0
    with_usage: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0
    """Replies taken from the response cache (no tokens spent this time)."""
    spent_prompt: int = 0
    spent_completion: int = 0


@dataclass
class CandidateSummary:
    count: int = 0
    figure_of: dict[str, str] = field(default_factory=dict)
    by_generator: dict[tuple[str, str], UsageTotals] = field(default_factory=dict)
    """(backend, model) -> candidates and tokens."""


@dataclass
class FailureSummary:
    count: int = 0
    reasons: Counter = field(default_factory=Counter)


class RoundFiles:
    """The files of one round folder, each read at most once (lazily, by the sections that need it)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self.run_problem = ""

    def path(self, name: str) -> Path:
        return self.dir / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def state(self, name: str, detail: str = "") -> FileState:
        return FileState(name, self.exists(name), detail if self.exists(name) else "absent")

    @cached_property
    def run(self) -> dict[str, Any]:
        """run.json; ``{}`` when it is absent or unreadable (then :attr:`run_problem` says why)."""
        path = self.path("run.json")
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.run_problem = f"run.json is not valid JSON ({exc})"
            warn(f"{path}: not valid JSON ({exc}); the report has no run summary")
            return {}
        return _as_dict(data)

    @property
    def last_finished(self) -> str | None:
        """When the latest stage in run.json finished (the page shows it instead of a clock time, so that a
        report of unchanged files is byte-identical)."""
        stages = self.run.get("stages")
        times = [str(entry["finished"]) for entry in (stages.values() if isinstance(stages, dict) else [])
                 if isinstance(entry, dict) and entry.get("finished")]
        return _time(max(times)) if times else None

    def stage(self, name: str) -> dict[str, Any]:
        stages = self.run.get("stages")
        entry = stages.get(name) if isinstance(stages, dict) else None
        return _as_dict(entry)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """vital.toml as written (for settings the run record leaves out, such as ``[eval] min_n``)."""
        path = self.path("vital.toml")
        try:
            return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return {}

    @cached_property
    def min_n(self) -> int:
        section = self.settings.get("eval")
        value = section.get("min_n", DEFAULT_MIN_N) if isinstance(section, dict) else DEFAULT_MIN_N
        return value if isinstance(value, int) and value >= 0 else DEFAULT_MIN_N

    def records(self, name: str) -> Iterator[dict[str, Any]]:
        """The objects of a JSONL file (a torn last line, as an interrupted stage leaves it, is skipped)."""
        for _, record in iter_json_lines(self.path(name), skip_torn_tail=True):
            yield record

    def lines(self, name: str) -> int:
        """Records in a JSONL file, counted without parsing them (0 when absent)."""
        path = self.path(name)
        if not path.is_file():
            return 0
        count = 0
        with path.open("rb") as handle:
            for raw in handle:
                count += bool(raw.strip())
        return count

    def json(self, name: str) -> Any:
        return json.loads(self.path(name).read_text(encoding="utf-8"))

    @cached_property
    def figures(self) -> FigureSummary:
        """figures.jsonl in one pass (empty when absent)."""
        summary = FigureSummary()
        if not self.exists("figures.jsonl"):
            return summary
        for record in self.records("figures.jsonl"):
            domains = [d for d in record.get("domains") or [] if isinstance(d, str)]
            summary.count += 1
            summary.with_image += bool(record.get("image"))
            summary.domains_of[str(record.get("id"))] = domains
            summary.per_domain.update(domains or [NO_DOMAIN])
        return summary

    def domain_of_figure(self, figure_id: str) -> str:
        return _domain(self.figures.domains_of.get(figure_id, []))

    @cached_property
    def candidates(self) -> CandidateSummary:
        summary = CandidateSummary()
        for record in self.records("candidates.jsonl"):
            summary.count += 1
            summary.figure_of[str(record.get("id"))] = str(record.get("figure_id"))
            generator = _as_dict(record.get("generator"))
            key = (str(generator.get("backend", "?")), str(generator.get("model", "?")))
            totals = summary.by_generator.setdefault(key, UsageTotals())
            totals.candidates += 1
            usage = record.get("usage")
            if isinstance(usage, dict):
                prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                totals.with_usage += 1
                totals.prompt_tokens += prompt
                totals.completion_tokens += completion
                if usage.get("cached"):
                    totals.cached += 1
                else:
                    totals.spent_prompt += prompt
                    totals.spent_completion += completion
        return summary

    @cached_property
    def judge_scores(self) -> dict[str, float]:
        from vital.records import read_scores

        return read_scores(self.path("scores.jsonl"), source="model") if self.exists("scores.jsonl") else {}

    @cached_property
    def selection_scores(self) -> tuple[str, dict[str, float]]:
        """The scores selection ranks by: the selector's when it scored (and run.json does not say that select
        used the judge's), else the judge's."""
        from vital.records import read_scores

        source = (self.stage("select").get("counts") or {}).get("source")
        if self.exists("selector-scores.jsonl") and source != "model":
            return "selector-scores.jsonl", read_scores(self.path("selector-scores.jsonl"), source=None)
        return "scores.jsonl", self.judge_scores

    @cached_property
    def selected_ids(self) -> set[str]:
        """Ids of the records in selected.json (streamed: the export can be large)."""
        return {str(record.get("id")) for _, _, record in iter_json_objects(self.path("selected.json"))
                if isinstance(record, dict)}

    def failures(self, name: str) -> FailureSummary:
        summary = FailureSummary()
        if self.exists(name):
            for record in self.records(name):
                summary.count += 1
                summary.reasons[_cut(str(record.get("reason", record.get("error", "?"))), 160)] += 1
        return summary


# --- plots ---------------------------------------------------------------------------------------------------


class Plots:
    """PNG files in ``DIR/report/``; every figure is drawn with matplotlib's object API (Agg, no pyplot state)."""

    def __init__(self, folder: Path, href: str) -> None:
        self.folder = folder
        self.href = href
        self.written: set[str] = set()

    def figure(self, width: float = 6.4, height: float = 3.4, **subplots: Any) -> tuple[Any, Any]:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(width, height), layout="constrained")
        return figure, figure.subplots(**subplots)

    @staticmethod
    def style(axis: Any, *, grid: str = "y", counts: str | None = None) -> None:
        """Light frame and grid; ``counts`` ("x" or "y") names an axis of counts (integer ticks only)."""
        from matplotlib.ticker import MaxNLocator

        axis.spines[["top", "right"]].set_visible(False)
        if grid:
            axis.grid(axis=grid, alpha=0.3)
        axis.set_axisbelow(True)
        if counts:
            getattr(axis, f"{counts}axis").set_major_locator(MaxNLocator(integer=True))

    def _write(self, filename: str, data: bytes) -> str:
        """Write a PNG unless an identical one is there (a report of unchanged files touches nothing)."""
        path = self.folder / filename
        if not (path.is_file() and path.read_bytes() == data):
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_writer(path, "wb") as handle:
                handle.write(data)
        self.written.add(filename)
        return f"{self.href}/{filename}"

    def save(self, figure: Any, name: str, alt: str, caption: str = "", *, wide: bool = False) -> Plot:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        return Plot(self._write(f"{name}.png", buffer.getvalue()), alt, caption, wide)

    def thumbnail(self, image: Path, key: str) -> str:
        """A small PNG of an image (DICOM windowed by the figure loader); raises ImageError when unreadable."""
        from vital.figures.images import load_image

        picture = load_image(image)
        picture.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        buffer = io.BytesIO()
        picture.save(buffer, format="png", optimize=True)
        return self._write(f"thumb-{hashlib.sha256(key.encode()).hexdigest()[:16]}.png", buffer.getvalue())

    def remove_stale(self) -> None:
        """Delete PNGs an earlier report left that this one did not draw (they would describe other data)."""
        if self.folder.is_dir():
            for path in self.folder.glob("*.png"):
                if path.name not in self.written:
                    path.unlink()

    def bars(self, name: str, counts: dict[str, int], *, title: str, xlabel: str, alt: str,
             colour: str = BASE_COLOUR) -> Plot:
        """Horizontal bars, largest first, each labelled with its count."""
        labels = list(counts)
        figure, axis = self.figure(6.4, max(2.0, 0.9 + 0.32 * len(labels)))
        positions = range(len(labels))
        axis.barh(positions, list(counts.values()), color=colour)
        axis.set_yticks(positions, labels)
        axis.invert_yaxis()
        for position, value in zip(positions, counts.values(), strict=True):
            axis.annotate(f"{value:,}", (value, position), xytext=(3, 0), textcoords="offset points",
                          va="center", fontsize=8)
        axis.set(title=title, xlabel=xlabel)
        axis.margins(x=0.12)
        self.style(axis, grid="x", counts="x")
        return self.save(figure, name, alt)


def _colours(names: list[str]) -> dict[str, str]:
    fixed = {"base": BASE_COLOUR, "tuned": TUNED_COLOUR}
    others = iter(OTHER_COLOURS * (len(names) // len(OTHER_COLOURS) + 1))
    return {name: fixed.get(name) or next(others) for name in names}


# --- sections ------------------------------------------------------------------------------------------------

SectionFunction = Callable[[RoundFiles, Plots], Section]


def _section(round_: RoundFiles, key: str, title: str, intro: str) -> Section:
    """A stage's section, with the stage's status from run.json."""
    return Section(key, title, intro, round_.stage(key).get("status"))


def _nothing_to_show(section: Section, round_: RoundFiles, *names: str) -> bool:
    """Whether none of ``names`` is in the folder; if so the section lists them as absent and says so."""
    if any(round_.exists(name) for name in names):
        return False
    section.files += [round_.state(name) for name in names]
    why = f" (run.json: {section.key} is {section.status})" if section.status else ""
    section.absent = f"Not in this folder: {', '.join(names)}{why}."
    return True


def _failure_table(summary: FailureSummary, name: str) -> Table:
    rows = [[Cell(reason), Cell(_int(count), "num")] for reason, count in summary.reasons.most_common(FAILURE_REASONS)]
    more = len(summary.reasons) - FAILURE_REASONS
    note = f"{more} more distinct reasons in {name}." if more > 0 else f"Every failure is listed in {name}."
    return Table(f"Failures ({summary.count:,})", ["reason", "records"], rows, note)


def _add_failures(section: Section, round_: RoundFiles, name: str) -> int:
    """A failures file in the section's file list and its commonest reasons as a table; returns the count."""
    summary = round_.failures(name)
    section.files.append(round_.state(name, f"{summary.count:,} records"))
    if summary.count:
        section.failures.append(_failure_table(summary, name))
    return summary.count


def summary_section(round_: RoundFiles, plots: Plots) -> Section:
    section = Section("run", "Run summary", "What each stage last did, from the run record.")
    section.files.append(round_.state("run.json"))
    stages = round_.run.get("stages")
    if not isinstance(stages, dict) or not stages:
        section.absent = (f"{round_.run_problem or 'Not in this folder: run.json (vital run writes it)'}. "
                          "The sections below show the files found.")
        return section
    rows: list[list[Cell]] = []
    statuses: Counter[str] = Counter()
    versions: dict[str, Any] = {}
    for name, entry in stages.items():  # run.json lists the stages in the order they first ran: pipeline order
        entry = _as_dict(entry)
        status = str(entry.get("status", "?"))
        statuses[status] += 1
        versions = entry.get("versions") or versions
        failed = entry.get("failed") or 0
        rows.append([
            Cell(name), Cell(status, badge=status), Cell(_seconds(entry.get("seconds")), "num"),
            Cell(_counts_text(entry.get("counts") or {})),
            Cell(_int(failed), "num bad" if failed else "num"),
            Cell(_time(entry.get("finished")) if entry.get("finished") else "–"),
            Cell(" ".join(str(note) for note in entry.get("notes") or [])),
        ])
    section.panels.append(Table("Stages", ["stage", "status", "duration", "counts", "failed", "finished", "notes"],
                                rows, wide=True))
    section.facts.append(("config", f"{round_.run.get('config') or 'vital.toml'}"))
    sha = str(round_.run.get("config_sha256") or "")
    if sha:
        section.facts.append(("config hash", sha.removeprefix("sha256:")[:12]))
    section.facts.append(("stages", ", ".join(f"{n} {s}" for s, n in statuses.most_common())))
    seconds = [e.get("seconds") for e in stages.values() if isinstance(e, dict)]
    section.facts.append(("time of the last runs", _seconds(sum(s for s in seconds if isinstance(s, int | float)))))
    if versions:
        section.facts.append(("versions", " · ".join(f"{k} {v}" for k, v in versions.items() if v)))
    return section


def corpus_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "figures", "Corpus", "Figures imported, per domain.")
    if _nothing_to_show(section, round_, "figures.jsonl"):
        return section
    figures = round_.figures
    section.files.append(round_.state("figures.jsonl", f"{figures.count:,} figures"))
    demos: Counter[str] = Counter()
    demonstrations = 0
    if round_.exists("demos.jsonl"):
        for record in round_.records("demos.jsonl"):
            demonstrations += 1
            demos.update(record.get("domains") or [NO_DOMAIN])
    section.files.append(round_.state("demos.jsonl", f"{demonstrations:,} demonstrations"))
    section.facts += [("figures", _int(figures.count)), ("with an image", _int(figures.with_image)),
                      ("domains", _int(len(figures.per_domain)))]
    if demonstrations:
        section.facts.append(("demonstrations", _int(demonstrations)))
    failed = _add_failures(section, round_, "figures.failures.jsonl")
    if failed:
        section.facts.append(("failed", _int(failed)))
    per_domain = dict(figures.per_domain.most_common())
    if per_domain:
        section.panels.append(plots.bars("corpus-domains", per_domain, title="Figures per domain", xlabel="figures",
                                        alt="bar chart of figures per domain"))
    section.panels.append(Table("Per domain", ["domain", "figures", "share", "demonstrations"], [
        [Cell(domain), Cell(_int(count), "num"), Cell(_share(count, figures.count), "num"),
         Cell(_int(demos.get(domain, 0)), "num")] for domain, count in per_domain.items()
    ], "A figure with several domains counts in each."))
    return section


def sample_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "sample", "Sample", "Figures sampled for clinicians: coverage of clusters and domains.")
    if _nothing_to_show(section, round_, "sample.jsonl"):
        return section
    clusters: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    count = 0
    for record in round_.records("sample.jsonl"):
        count += 1
        clusters[str(record.get("cluster", "?"))] += 1
        domains.update(record.get("domains") or [NO_DOMAIN])
    section.files.append(round_.state("sample.jsonl", f"{count:,} figures"))
    corpus = round_.figures.per_domain
    asked = round_.stage("sample").get("counts", {}) or {}
    section.facts += [("sampled", _int(count)), ("clusters covered", _int(len(clusters)))]
    if round_.exists("figures.jsonl"):
        section.facts.append(("of the corpus", _share(count, round_.figures.count)))
    if isinstance(asked.get("clusters"), int):
        section.facts.append(("clusters made", _int(asked["clusters"])))
    ordered = sorted(clusters.items(), key=lambda item: _cluster_order(item[0]))
    figure, (cluster_axis, domain_axis) = plots.figure(11.5, 3.4, ncols=2, width_ratios=[3, 2])
    cluster_axis.bar(range(len(ordered)), [n for _, n in ordered], color=BASE_COLOUR)
    step = max(1, len(ordered) // 30)
    cluster_axis.set_xticks(range(0, len(ordered), step), [c for c, _ in ordered][::step],
                            fontsize=8 if len(ordered) > 12 else None)
    cluster_axis.set(title="Sampled figures per cluster", xlabel="cluster", ylabel="figures")
    plots.style(cluster_axis, counts="y")
    names = sorted(set(domains) | set(corpus), key=lambda d: (-corpus.get(d, domains[d]), d))
    shares = [100 * domains[d] / corpus[d] if corpus.get(d) else 0 for d in names]
    domain_axis.barh(range(len(names)), shares, color=TUNED_COLOUR)
    domain_axis.set_yticks(range(len(names)), [f"{d} ({domains[d]}/{corpus.get(d, '?')})" for d in names])
    domain_axis.invert_yaxis()
    domain_axis.set(title="Share of each domain's figures sampled", xlabel="% of the corpus domain")
    plots.style(domain_axis, grid="x")
    section.panels.append(plots.save(figure, "sample-coverage", "sampled figures per cluster and per domain",
                                    "Left: figures per cluster. Right: sampled / corpus figures per domain.",
                                    wide=True))
    section.panels.append(Table("Domains", ["domain", "corpus", "sampled", "share sampled"], [
        [Cell(d), Cell(_int(corpus.get(d, 0)), "num"), Cell(_int(domains[d]), "num"),
         Cell(_share(domains[d], corpus.get(d, 0)), "num")] for d in names
    ]))
    return section


def _cluster_order(label: str) -> tuple[int, int, str]:
    """Cluster numbers in numeric order, then any other labels."""
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def _cost(model: str, prompt: int, completion: int) -> float | None:
    from vital.llm.prices import DEFAULT_PRICES, estimate_cost

    return estimate_cost(model, prompt, completion, DEFAULT_PRICES)


def _audit_log(path: Path) -> tuple[Counter, dict[str, tuple[int, int]]] | None:
    """From a ``.llm.sqlite`` audit log (opened read-only): calls per status, and tokens per model over every
    attempt (failed replies and retries cost tokens too); ``None`` when it cannot be read."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        statuses = Counter(dict(connection.execute("SELECT status, COUNT(*) FROM calls GROUP BY status")))
        tokens = {model: (int(prompt), int(completion)) for model, prompt, completion in connection.execute(
            "SELECT model, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM calls "
            "GROUP BY model")}
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return statuses, tokens


def _run_cost(section: Section, stage: dict[str, Any]) -> None:
    """The cost run.json records for a model stage's last run (a resumed stage paid for earlier runs too)."""
    cost = (stage.get("counts") or {}).get("cost_usd")
    if isinstance(cost, int | float):
        section.facts.append(("cost of the last run (est.)", f"${cost:,.2f}"))


def generation_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "generate", "Generation", "Candidate conversations written per figure, failures and "
                       "cost.")
    if _nothing_to_show(section, round_, "candidates.jsonl"):
        return section
    candidates = round_.candidates
    figures = len(set(candidates.figure_of.values()))
    section.files.append(round_.state("candidates.jsonl", f"{candidates.count:,} candidates"))
    failed = _add_failures(section, round_, "candidates.failures.jsonl")
    section.facts += [("candidates", _int(candidates.count)), ("figures", _int(figures)),
                      ("per figure", _num(candidates.count / figures if figures else None)),
                      ("failed", _int(failed))]
    per_domain = Counter(round_.domain_of_figure(f) for f in candidates.figure_of.values())
    if per_domain:
        section.panels.append(plots.bars("generation-domains", dict(per_domain.most_common()),
                                         title="Candidates per domain", xlabel="candidates",
                                         alt="bar chart of candidates per domain"))
    _generator_cost(section, candidates)
    _run_cost(section, round_.stage("generate"))
    _audit_facts(section, round_.path("candidates.llm.sqlite"))
    if round_.exists("draft-candidates.jsonl"):
        section.files.append(round_.state("draft-candidates.jsonl", f"{round_.lines('draft-candidates.jsonl'):,} "
                                          "drafts of the sample, for clinicians to choose demonstrations from"))
    return section


def _generator_cost(section: Section, candidates: CandidateSummary) -> None:
    """Candidates, tokens and estimated cost per generator, from the usage the candidates record."""
    rows, total_cost, unpriced = [], 0.0, False
    for (backend, model), totals in sorted(candidates.by_generator.items()):
        cost = _cost(model, totals.spent_prompt, totals.spent_completion) if totals.with_usage else None
        unpriced |= bool(totals.with_usage) and cost is None
        total_cost += cost or 0.0
        rows.append([Cell(f"{backend} · {model}"), Cell(_int(totals.candidates), "num"),
                     Cell(f"{totals.prompt_tokens:,} / {totals.completion_tokens:,}", "num"),
                     Cell(_int(totals.cached), "num"), Cell(f"${cost:,.2f}" if cost is not None else "–", "num")])
    section.panels.append(Table("By generator", ["generator", "candidates", "tokens in / out", "cached replies",
                                                 "cost (est.)"], rows,
                                "Tokens as the candidates record them; cost of those not served from the response "
                                "cache, at list prices (vital.llm.prices); a model without a known price has none."))
    if any(t.with_usage for t in candidates.by_generator.values()):
        tokens = sum(t.prompt_tokens + t.completion_tokens for t in candidates.by_generator.values())
        section.facts += [("tokens", _int(tokens)),
                          ("cost (est.)", f"${total_cost:,.2f}" + (" + unpriced models" if unpriced else ""))]
    else:
        section.notes.append("No candidate carries token usage: they were written without a model (offline "
                             "backend), so there is no cost.")


def _audit_facts(section: Section, audit: Path) -> None:
    """The engine's audit log: calls per status, and the cost of every attempt (retries and unusable replies
    included), which the candidates alone do not show."""
    log = _audit_log(audit) if audit.is_file() else None
    if log is None:
        section.files.append(FileState(audit.name, False, "unreadable" if audit.is_file() else "absent"))
        return
    statuses, tokens = log
    calls = ", ".join(f"{_int(n)} {status}" for status, n in sorted(statuses.items())) or "no calls"
    section.files.append(FileState(audit.name, True, f"API calls: {calls}"))
    section.facts.append(("API calls", _int(sum(statuses.values()))))
    costs = [_cost(model, prompt, completion) for model, (prompt, completion) in tokens.items()]
    priced = [cost for cost in costs if cost is not None]
    if priced and len(priced) == len(costs):  # a model without a known price leaves the total unknown
        section.facts.append(("spent, every attempt (est.)", f"${sum(priced):,.2f}"))


def judge_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "judge", "Judge", "The model judge's rubric scores (0–10) and pairwise verdicts.")
    if _nothing_to_show(section, round_, "scores.jsonl", "model-preferences.jsonl"):
        return section
    scores = list(round_.judge_scores.values())
    section.files.append(round_.state("scores.jsonl", f"{round_.lines('scores.jsonl'):,} scores"))
    if round_.exists("scores.jsonl"):
        judges = Counter(str(record.get("judge") or "?") for record in islice(round_.records("scores.jsonl"), 200))
        section.facts += [("candidates scored", _int(len(scores))), ("judge", ", ".join(judges))]
    if scores:
        section.facts += [("mean", _num(statistics.fmean(scores), 2)), ("median", _num(statistics.median(scores), 2))]
        figure, axis = plots.figure(6.4, 3.2)
        axis.hist(scores, bins=[b / 2 for b in range(21)], color=BASE_COLOUR, edgecolor="white")
        axis.set(title="Judge scores", xlabel="score (0–10)", ylabel="candidates", xlim=(0, 10))
        plots.style(axis, counts="y")
        section.panels.append(plots.save(figure, "judge-scores", "histogram of judge scores"))
    failed = _add_failures(section, round_, "scores.failures.jsonl")
    section.facts.append(("failed", _int(failed)))
    _run_cost(section, round_.stage("judge"))
    preferences, ties = round_.lines("model-preferences.jsonl"), round_.lines("model-preferences.ties.jsonl")
    section.files.append(round_.state("model-preferences.jsonl", f"{preferences:,} preferences"))
    section.files.append(round_.state("model-preferences.ties.jsonl", f"{ties:,} ties"))
    if preferences or ties:
        section.facts += [("pairwise verdicts", _int(preferences)), ("ties (incl. order flips)", _int(ties))]
    return section


def clinician_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "annotate", "Clinicians", "Annotations, agreement between clinicians and with the "
                       "judge.")
    configured = (round_.settings.get("annotate") or {}).get("db", "annotations.db")
    if "://" in str(configured):  # a database server: the report reads only this folder
        section.notes.append("The annotation database is a server ([annotate] db), which the report does not "
                             "connect to; `vital annotate stats --db URL --scores scores.jsonl` shows agreement.")
        return section
    name = str(configured)
    if _nothing_to_show(section, round_, name):
        return section
    section.files += [round_.state(name),
                      round_.state("preferences.jsonl", f"{round_.lines('preferences.jsonl'):,} preferences"),
                      round_.state("clinician-demos.jsonl",
                                   f"{round_.lines('clinician-demos.jsonl'):,} demonstrations")]
    from vital.annotate import AnnotationDB
    from vital.annotate.agreement import agreement_report

    database = AnnotationDB(round_.path(name), create=False)
    try:
        report = agreement_report(database, judge_scores=round_.judge_scores or None)
    finally:
        database.close()
    answered = {kind: sum(counts.get(kind, 0) for counts in report.answers.values()) for kind in ("compare", "demos")}
    section.facts += [("annotators with answers", _int(len(report.answers))),
                      ("comparisons answered", _int(answered["compare"])),
                      ("demonstration choices", _int(answered["demos"]))]
    for kind in report.overall:
        section.facts.append((f"Krippendorff's α ({kind.kind})",
                              f"{_num(kind.alpha, 2)} on {kind.items_with_overlap:,} items"))
    if not report.answers:
        section.notes.append("No clinician has answered yet (vital annotate serve; the run waits for them when the "
                             "config requires preferences).")
        return section
    if report.pairs:
        section.panels.append(_kappa_heat_map(report, plots))
        section.panels.append(Table("Cohen's κ per annotator pair", ["task", "annotators", "shared items",
                                                                     "observed agreement", "κ"], [
            [Cell(p.kind), Cell(f"{p.first} · {p.second}"), Cell(_int(p.items), "num"),
             Cell(f"{100 * p.observed:.0f} %", "num"), Cell(_num(p.kappa, 2), "num")]
            for p in report.pairs]))
    section.panels.append(Table("Answers per annotator", ["annotator", "comparisons", "demonstrations"], [
        [Cell(name), Cell(_int(counts.get("compare", 0)), "num"), Cell(_int(counts.get("demos", 0)), "num")]
        for name, counts in sorted(report.answers.items())]))
    if not report.pairs:
        section.notes.append("No two clinicians answered the same item yet, so there is no agreement to measure "
                             "(the [annotate] overlap setting routes items to several clinicians).")
    if report.judge:
        section.panels.append(Table("Agreement with the judge", ["task", "annotator", "compared", "agree",
                                                                 "judge ties"], [
            [Cell(j.kind), Cell(j.annotator), Cell(_int(j.compared), "num"), Cell(_share(j.agree, j.compared), "num"),
             Cell(_int(j.judge_ties), "num")] for j in report.judge],
            "Compare: the clinician's preferred candidate has the higher judge score. Demonstrations: the "
            "clinician's best is among the judge's top-scored."))
    return section


def _kappa_heat_map(report: Any, plots: Plots) -> Plot:
    """Annotator × annotator Cohen's κ, one panel per task kind with pairs; cells say κ and the items shared."""
    import numpy as np

    kinds = sorted({pair.kind for pair in report.pairs})
    names = sorted({name for pair in report.pairs for name in (pair.first, pair.second)})
    size = 1.6 + 0.55 * len(names)
    figure, axes = plots.figure(min(12.0, size * len(kinds) + 1.2), size, ncols=len(kinds), squeeze=False)
    image = None
    for axis, kind in zip(axes[0], kinds, strict=True):
        matrix = np.full((len(names), len(names)), np.nan)
        shared = np.zeros((len(names), len(names)), dtype=int)
        for pair in (p for p in report.pairs if p.kind == kind):
            i, j = names.index(pair.first), names.index(pair.second)
            matrix[i, j] = matrix[j, i] = pair.kappa
            shared[i, j] = shared[j, i] = pair.items
        image = axis.imshow(matrix, cmap="RdBu", vmin=-1, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                if shared[i, j]:
                    value = "–" if math.isnan(matrix[i, j]) else f"{matrix[i, j]:.2f}"
                    axis.text(j, i, f"{value}\nn={shared[i, j]}", ha="center", va="center", fontsize=7,
                              color="white" if abs(np.nan_to_num(matrix[i, j])) > 0.6 else "black")
        axis.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        axis.set_yticks(range(len(names)), names, fontsize=8)
        axis.set_title(f"Cohen's κ: {kind}")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="κ")
    return plots.save(figure, "clinician-kappa", "heat map of Cohen's kappa per annotator pair",
                      "Cohen's κ per annotator pair (n = items both answered; blank: no shared items).")


def _first_present(round_: RoundFiles, names: Iterable[str]) -> str | None:
    return next((name for name in names if round_.exists(name)), None)


def selector_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "selector", "Selector", "The learned rating function: held-out agreement beside the "
                       "judge's, training curves and the human-weight sweep.")
    sweep_name = _first_present(round_, ("selector/sweep.json", "sweep/sweep.json", "sweep.json"))
    names = ("selector/metrics.json", "selector/curves.json", sweep_name or "selector/sweep.json")
    if _nothing_to_show(section, round_, *names):
        return section
    section.files += [round_.state(name) for name in names]
    if round_.exists("selector/metrics.json"):
        _selector_metrics(section, round_.json("selector/metrics.json"))
    if round_.exists("selector/selector.json"):
        saved = round_.json("selector/selector.json")
        config = saved.get("config", {}) if isinstance(saved, dict) else {}
        encoders = saved.get("encoders", {}) if isinstance(saved, dict) else {}
        weight = config.get("human_weight")
        section.facts += [("human weight", f"{weight:g}" if isinstance(weight, int | float) else "–"),
                          ("encoders", ", ".join(f"{k} {v}" for k, v in encoders.items()) or "–")]
    if sweep_name is not None:
        _selector_sweep(section, round_.json(sweep_name), plots)
    if round_.exists("selector/curves.json"):
        curves = round_.json("selector/curves.json")
        if isinstance(curves, list) and curves:
            section.panels.append(_selector_curves(curves, plots))
    return section


def _selector_metrics(section: Section, metrics: dict[str, Any]) -> None:
    held = metrics.get("held_out") or {}
    judge = metrics.get("judge_on_held_out") or {}
    source = metrics.get("held_out_source")
    pairs = metrics.get("pairs") or {}
    section.facts += [("held-out pairs", _int(held.get("pairs", pairs.get("held_out", 0)))),
                      ("held out from", {"human": "clinicians", "model": "the judge"}.get(str(source), str(source))),
                      ("clinician pairs (train)", _int(pairs.get("human_train", 0))),
                      ("judge pairs", _int(pairs.get("model_pairs", 0)))]
    if isinstance(metrics.get("epochs_run"), int):
        section.facts.append(("epochs", f"{metrics['epochs_run']} (best {metrics.get('best_epoch', '?')})"))
    if not held:
        section.notes.append("No held-out pairs: the selector was trained on every pair, so there is no held-out "
                             "agreement.")
        return
    rows = []
    for key, label in (("agreement", "agreement"), ("auc", "AUC"), ("map", "MAP"), ("mean_rank", "mean rank")):
        rows.append([Cell(label), Cell(_num(held.get(key), 3), "num"), Cell(_num(judge.get(key), 3), "num")])
    note = ("The judge's column scores the same held-out clinician pairs with the judge's scores." if judge else
            "Held-out pairs are judge pairs (no clinician pairs were held out), so the judge is not compared."
            if source == "model" else "The judge scored too few of the held-out candidates to compare.")
    section.panels.append(Table("Held-out agreement", ["metric", "selector", "judge"], rows, note))


def _selector_curves(curves: list[dict[str, Any]], plots: Plots) -> Plot:
    epochs = [row.get("epoch") for row in curves]
    figure, (loss_axis, agree_axis) = plots.figure(11.5, 3.0, ncols=2)
    for key, label, axis in (("train_loss", "train", loss_axis), ("held_out_loss", "held out", loss_axis),
                             ("train_agreement", "train", agree_axis),
                             ("held_out_agreement", "held out", agree_axis)):
        values = [row.get(key) for row in curves]
        if any(isinstance(v, int | float) for v in values):
            axis.plot(epochs, [v if isinstance(v, int | float) else math.nan for v in values], marker="o",
                      label=label, color=BASE_COLOUR if label == "train" else TUNED_COLOUR)
    loss_axis.set(title="Selector loss", xlabel="epoch", ylabel="pairwise loss")
    agree_axis.set(title="Selector agreement", xlabel="epoch", ylabel="agreement")
    for axis in (loss_axis, agree_axis):
        plots.style(axis, grid="both", counts="x")
        axis.legend(fontsize=8)
    return plots.save(figure, "selector-curves", "selector loss and agreement per epoch", wide=True)


def _selector_sweep(section: Section, sweep: dict[str, Any], plots: Plots) -> None:
    runs = [run for run in sweep.get("runs", []) if isinstance(run, dict)]
    table = Table("Human-weight sweep", ["human weight", "agreement", "AUC", "MAP", "judge agreement"], [
        [Cell(_num(run.get("human_weight"), 0), "num"), Cell(_num(run.get("agreement"), 3), "num"),
         Cell(_num(run.get("auc"), 3), "num"), Cell(_num(run.get("map"), 3), "num"),
         Cell(_num(run.get("judge_agreement"), 3), "num")] for run in runs], str(sweep.get("note") or ""))
    points = [(run["human_weight"], run.get("agreement")) for run in runs
              if isinstance(run.get("human_weight"), int | float)]
    if len(points) >= 2:
        section.panels.append(_sweep_plot(points, runs, plots))
    section.panels.append(table)


def _sweep_plot(points: list[tuple[float, Any]], runs: list[dict[str, Any]], plots: Plots) -> Plot:
    figure, axis = plots.figure(6.4, 3.2)
    weights = [w for w, _ in points]
    axis.plot(weights, [a if isinstance(a, int | float) else math.nan for _, a in points], marker="o",
              color=BASE_COLOUR, label="selector")
    judge = [run.get("judge_agreement") for run in runs if isinstance(run.get("human_weight"), int | float)]
    if any(isinstance(j, int | float) and not math.isnan(j) for j in judge):
        axis.plot(weights, [j if isinstance(j, int | float) else math.nan for j in judge], linestyle="--",
                  color=TUNED_COLOUR, label="judge, same pairs")
    if min(weights) > 0:
        axis.set_xscale("log")
    axis.set(title="Held-out agreement by human weight", xlabel="human weight w", ylabel="agreement")
    axis.legend(fontsize=8)
    plots.style(axis, grid="both")
    return plots.save(figure, "selector-sweep", "held-out agreement by human weight")


def selection_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "select", "Selection", "What was kept for tuning: per domain, and the score cut.")
    if _nothing_to_show(section, round_, "selected.json"):
        return section
    selected = round_.selected_ids
    section.files.append(round_.state("selected.json", f"{len(selected):,} records"))
    scores_name, scores = round_.selection_scores
    section.files.append(round_.state(scores_name, f"{len(scores):,} candidates scored"))
    section.files.append(FileState("selected.report.md", round_.exists("selected.report.md"),
                                   "the selection's own report" if round_.exists("selected.report.md") else "absent"))
    failed = _add_failures(section, round_, "selected.failures.jsonl")
    candidates = round_.candidates if round_.exists("candidates.jsonl") else CandidateSummary()
    kept = [cid for cid in candidates.figure_of if cid in selected]
    merged = len(selected) - len(kept)
    counts = round_.stage("select").get("counts") or {}
    kept_scores = [scores[cid] for cid in kept if cid in scores]
    cut = counts.get("cut") if isinstance(counts.get("cut"), int | float) else (min(kept_scores)
                                                                                 if kept_scores else None)
    section.facts += [("kept", _int(len(kept))), ("of candidates", _int(candidates.count)),
                      ("share kept", _share(len(kept), candidates.count)), ("score cut", _num(cut, 3)),
                      ("ranked by", scores_name), ("not exportable", _int(failed))]
    if merged:
        section.facts.append(("merged from other datasets", _int(merged)))
    ranked = [(value, cid in selected) for cid, value in scores.items() if cid in candidates.figure_of]
    if ranked:
        section.panels.append(_cut_histogram(ranked, cut, scores_name, plots))
    per_domain: dict[str, Counter] = defaultdict(Counter)
    for cid, figure_id in candidates.figure_of.items():
        per_domain[round_.domain_of_figure(figure_id)]["kept" if cid in selected else "dropped"] += 1
    domains = sorted(per_domain, key=lambda d: -sum(per_domain[d].values()))
    if domains:
        section.panels.append(_kept_per_domain(per_domain, domains, plots))
        section.panels.append(Table("Per domain", ["domain", "kept", "dropped", "share kept"], [
            [Cell(d), Cell(_int(per_domain[d]["kept"]), "num"), Cell(_int(per_domain[d]["dropped"]), "num"),
             Cell(_share(per_domain[d]["kept"], sum(per_domain[d].values())), "num")] for d in domains]))
    return section


def _cut_histogram(ranked: list[tuple[float, bool]], cut: float | None, scores_name: str, plots: Plots) -> Plot:
    """Scores of kept and dropped candidates, stacked, with the cut as a vertical line."""
    figure, axis = plots.figure(6.4, 3.2)
    values = [v for v, _ in ranked]
    span = (min(values), max(values)) if min(values) < max(values) else (min(values) - 0.5, max(values) + 0.5)
    axis.hist([[v for v, k in ranked if k], [v for v, k in ranked if not k]], bins=40, range=span, stacked=True,
              color=[KEPT_COLOUR, DROPPED_COLOUR], label=["kept", "dropped"])
    if cut is not None:
        axis.axvline(cut, color=CUT_COLOUR, linestyle="--", label=f"cut {_num(cut, 3)}")
    axis.set(title=f"Scores ({scores_name}) and the cut", xlabel="score", ylabel="candidates")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    plots.style(axis, counts="y")
    return plots.save(figure, "selection-scores", "histogram of scores with the selection cut")


def _kept_per_domain(per_domain: dict[str, Counter], domains: list[str], plots: Plots) -> Plot:
    figure, axis = plots.figure(6.4, max(2.0, 0.9 + 0.32 * len(domains)))
    kept_counts = [per_domain[d]["kept"] for d in domains]
    axis.barh(range(len(domains)), kept_counts, color=KEPT_COLOUR, label="kept")
    axis.barh(range(len(domains)), [per_domain[d]["dropped"] for d in domains], left=kept_counts,
              color=DROPPED_COLOUR, label="dropped")
    axis.set_yticks(range(len(domains)), domains)
    axis.invert_yaxis()
    axis.set(title="Candidates kept per domain", xlabel="candidates")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    plots.style(axis, grid="x", counts="x")
    return plots.save(figure, "selection-domains", "kept and dropped candidates per domain")


def tune_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "tune", "Tuning", "Instruction tuning on the selected data: the loss curve.")
    section.notes += [str(note) for note in round_.stage("tune").get("notes") or []]  # e.g. why it was skipped
    if _nothing_to_show(section, round_, "tuned/tune.json", "tuned/log.jsonl"):
        return section
    summary = round_.json("tuned/tune.json") if round_.exists("tuned/tune.json") else {}
    summary = _as_dict(summary)
    section.files.append(round_.state("tuned/tune.json", str(summary.get("status") or "")))
    _tune_facts(section, summary)
    steps, losses, rates = [], [], []
    if round_.exists("tuned/log.jsonl"):
        for record in round_.records("tuned/log.jsonl"):
            if isinstance(record.get("step"), int | float) and isinstance(record.get("loss"), int | float):
                steps.append(record["step"])
                losses.append(record["loss"])
                rate = record.get("lr")
                rates.append(rate if isinstance(rate, int | float) else math.nan)
    section.files.append(round_.state("tuned/log.jsonl", f"{len(steps):,} steps"))
    _add_failures(section, round_, "tuned/failures.jsonl")
    if steps:
        section.panels.append(_loss_curve(steps, losses, rates, plots))
    else:
        section.notes.append("The training log has no steps yet.")
    return section


def _tune_facts(section: Section, summary: dict[str, Any]) -> None:
    """tune.json (vital.tuning.train): the method, the base, the data kept and set aside, steps, tokens, time."""
    config = _as_dict(summary.get("config"))
    counts = _as_dict(summary.get("counts"))
    method = summary.get("method") or config.get("method")
    base = summary.get("base")
    facts = [("method", method), ("base", Path(str(base)).name if base else None),
             ("examples", summary.get("examples", counts.get("examples"))), ("set aside", counts.get("failed")),
             ("truncated", counts.get("truncated")), ("optimizer steps", summary.get("steps")),
             ("tokens", summary.get("tokens")), ("processes", summary.get("world_size"))]
    section.facts += [(label, _num(value)) for label, value in facts if value is not None]
    if isinstance(summary.get("final_loss"), int | float):
        section.facts.append(("final loss", _num(summary["final_loss"], 4)))
    if isinstance(summary.get("seconds"), int | float):
        section.facts.append(("time", _seconds(summary["seconds"])))
    if summary.get("status") == "running":
        section.notes.append("tune.json says the run has not finished: the curve shows the steps logged so far.")


def _loss_curve(steps: list[float], losses: list[float], rates: list[float], plots: Plots) -> Plot:
    figure, axis = plots.figure(11.5, 3.4)
    smooth = len(steps) > 50
    axis.plot(steps, losses, color=BASE_COLOUR, alpha=0.35 if smooth else 1.0, linewidth=1,
              marker=None if smooth else "o", markersize=3, label="loss")
    if smooth:
        import numpy as np

        window = max(5, len(steps) // 50)
        sums = np.cumsum(np.concatenate([[0.0], losses]))
        starts = np.maximum(0, np.arange(1, len(losses) + 1) - window)
        averaged = (sums[1:] - sums[starts]) / (np.arange(1, len(losses) + 1) - starts)
        axis.plot(steps, averaged, color=BASE_COLOUR, linewidth=2, label=f"mean of the last {window} steps")
    axis.set(title="Training loss", xlabel="optimizer step", ylabel="loss")
    plots.style(axis, grid="both")
    if any(not math.isnan(r) for r in rates):
        rate_axis = axis.twinx()
        rate_axis.plot(steps, rates, color=TUNED_COLOUR, linewidth=1, linestyle="--", label="learning rate")
        rate_axis.set_ylabel("learning rate", color=TUNED_COLOUR)
        rate_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        rate_axis.spines[["top"]].set_visible(False)
        lines = axis.get_legend_handles_labels()[0] + rate_axis.get_legend_handles_labels()[0]
        axis.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper right")
    else:
        axis.legend(fontsize=8)
    return plots.save(figure, "tune-loss", "training loss per optimizer step", wide=True)


# --- evaluation ----------------------------------------------------------------------------------------------

HEADLINE_METRICS = (
    ("closed_accuracy", "closed accuracy", "n_closed"),
    ("recall", "open recall", "n_open"),
    ("open_accuracy", "open accuracy", "n_open"),
    ("f1", "open F1", "n_open"),
    ("precision", "open precision", "n_open"),
    ("exact_match", "open exact match", "n_open"),
)
BREAKDOWN_PANELS = (("recall", "open recall", "n_open"), ("closed_accuracy", "closed accuracy", "n_closed"))


@dataclass
class VqaRun:
    """One saved ``vital eval vqa --json`` result on one benchmark."""

    name: str
    benchmark: str
    data: dict[str, Any]

    def metric(self, key: str, where: dict[str, Any] | None = None) -> tuple[Any, Any]:
        source = self.data if where is None else where
        ci = _as_dict(source.get("ci95"))
        return source.get(key), ci.get(key)

    def label_set(self, category: str) -> str:
        sets = _as_dict(self.data.get("label_sets"))
        return str(sets.get(category) or self.benchmark)


def _is_vqa_result(data: Any) -> bool:
    return isinstance(data, dict) and "n_open" in data and "closed_accuracy" in data


def _vqa_runs(round_: RoundFiles) -> tuple[list[str], list[VqaRun]]:
    """The files eval/vqa-NAME.json (base first, then tuned, then others) as runs per benchmark.

    A file is one result, or an object of benchmark name -> result.
    """
    files = sorted(round_.path("eval").glob("vqa-*.json"),
                   key=lambda p: ({"vqa-base": 0, "vqa-tuned": 1}.get(p.stem, 2), p.name))
    runs = []
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = path.stem.removeprefix("vqa-")
        if _is_vqa_result(data):
            runs.append(VqaRun(name, str(data.get("benchmark") or "benchmark"), data))
        elif isinstance(data, dict):
            runs += [VqaRun(name, str(bench), result) for bench, result in data.items() if _is_vqa_result(result)]
    return [f"eval/{path.name}" for path in files], runs


def evaluation_section(round_: RoundFiles, plots: Plots) -> Section:
    section = _section(round_, "eval", "Evaluation", "Benchmark metrics with 95 % bootstrap intervals, the paired "
                       "comparison of the tuned model with the base, and breakdowns per benchmark.")
    for name in ("eval/answers-base.jsonl", "eval/answers-tuned.jsonl"):
        section.files.append(round_.state(name, f"{round_.lines(name):,} answers"))
    names, runs = _vqa_runs(round_) if round_.path("eval").is_dir() else ([], [])
    names = [*(names or ["eval/vqa-base.json", "eval/vqa-tuned.json"]), "eval/compare.json"]
    if _nothing_to_show(section, round_, *names):
        return section
    section.files += [round_.state(name) for name in names]
    min_n = round_.min_n
    benchmarks: dict[str, list[VqaRun]] = defaultdict(list)
    for run in runs:
        benchmarks[run.benchmark].append(run)
    for benchmark, group in benchmarks.items():
        section.panels.append(_headline_plot(benchmark, group, plots))
        section.panels.append(_headline_table(benchmark, group, min_n))
    if round_.exists("eval/compare.json"):
        _comparison(section, round_.json("eval/compare.json"), plots)
    for benchmark, group in benchmarks.items():
        _breakdowns(section, benchmark, group, min_n, plots)
    section.notes.append(f"Intervals are 95 % bootstrap intervals over questions; cells with fewer than {min_n} "
                         "questions are greyed ([eval] min_n). Breakdowns are drawn per benchmark: labels of two "
                         "benchmarks never share an axis.")
    return section


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "x"


def _headline_table(benchmark: str, runs: list[VqaRun], min_n: int) -> Table:
    rows = []
    for key, label, n_key in HEADLINE_METRICS:
        if all(run.data.get(key) is None for run in runs):
            continue
        n = runs[0].data.get(n_key)
        cells = [_value_cell(*run.metric(key), run.data.get(n_key), min_n) for run in runs]
        rows.append([Cell(label), Cell(_int(n) if n is not None else "–", "num"), *cells])
    modes = {str(run.data.get("mode")) for run in runs if run.data.get("mode")}
    note = f"Scoring mode: {', '.join(sorted(modes))}." if modes else ""
    return Table(f"{benchmark}: headline metrics (%, [95 % CI])", ["metric", "n", *(r.name for r in runs)], rows, note)


def _error(value: float, ci: Any) -> tuple[float, float]:
    """The distances from ``value`` down and up to its interval's ends (0, 0 without an interval)."""
    if not _interval(ci):
        return 0.0, 0.0
    return max(0.0, value - ci[0]), max(0.0, ci[1] - value)


def _headline_plot(benchmark: str, runs: list[VqaRun], plots: Plots) -> Plot:
    metrics = [(key, label) for key, label, _ in HEADLINE_METRICS[:3] if any(r.data.get(key) is not None for r in runs)]
    colours = _colours([run.name for run in runs])
    figure, axis = plots.figure(6.4, 3.2)
    width = 0.8 / max(1, len(runs))
    for index, run in enumerate(runs):
        positions = [m + (index - (len(runs) - 1) / 2) * width for m in range(len(metrics))]
        values = [run.metric(key) for key, _ in metrics]
        heights = [value if isinstance(value, int | float) else math.nan for value, _ in values]
        errors = [_error(height, ci) if not math.isnan(height) else (0.0, 0.0)
                  for height, (_, ci) in zip(heights, values, strict=True)]
        axis.bar(positions, heights, width=width * 0.95, color=colours[run.name], label=run.name,
                 yerr=list(zip(*errors, strict=True)) if errors else None, capsize=4, error_kw={"elinewidth": 1.2})
    axis.set_xticks(range(len(metrics)), [label for _, label in metrics])
    axis.set(title=f"{benchmark}: headline metrics with 95 % CI", ylabel="%", ylim=(0, 105))
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    plots.style(axis)
    return plots.save(figure, f"eval-{_slug(benchmark)}-headline", f"{benchmark} headline metrics with intervals")


def _breakdowns(section: Section, benchmark: str, runs: list[VqaRun], min_n: int, plots: Plots) -> None:
    """One table per breakdown category and label set, and its error-bar plot unless its labels mix vocabularies."""
    categories: list[str] = []
    for run in runs:
        breakdown = _as_dict(run.data.get("breakdown"))
        categories += [c for c in breakdown if c not in categories]
    for category in categories:
        by_set: dict[str, list[VqaRun]] = defaultdict(list)
        for run in runs:
            if category in (run.data.get("breakdown") or {}):
                by_set[run.label_set(category)].append(run)
        for label_set, group in by_set.items():
            title = f"{benchmark} by {category.replace('_', ' ')}"
            if len(by_set) > 1:
                title += f" ({label_set} labels)"
            cells = {run.name: run.data["breakdown"][category] for run in group}
            labels = sorted({label for labels in cells.values() for label in labels},
                            key=lambda label: (-_label_n(cells, label), label))
            if "+" in label_set:
                section.notes.append(f"{title}: the labels come from several vocabularies ({label_set}); they are "
                                     "tabled but not plotted on one axis. Evaluate each benchmark on its own.")
            else:
                section.panels.append(_breakdown_plot(title, group, cells, labels, min_n, plots))
            section.panels.append(_breakdown_table(title, category, group, cells, labels, min_n))


def _label_n(cells: dict[str, dict[str, Any]], label: str, n_key: str | None = None) -> int:
    """Questions under ``label`` (of one kind with ``n_key``, else of both), the most any result has."""
    keys = (n_key,) if n_key else ("n_open", "n_closed")
    return max((sum(int(c[label].get(key) or 0) for key in keys) for c in cells.values()
                if isinstance(c.get(label), dict)), default=0)


def _breakdown_table(title: str, category: str, runs: list[VqaRun], cells: dict[str, dict[str, Any]],
                     labels: list[str], min_n: int) -> Table:
    header = [category.replace("_", " ")]
    for _, what, _ in BREAKDOWN_PANELS:
        header += [f"n {what.split()[0]}", *(f"{run.name} {what}" for run in runs)]
    rows = []
    for label in labels:
        row = [Cell(label)]
        for key, _, n_key in BREAKDOWN_PANELS:
            n = _label_n(cells, label, n_key)
            row.append(Cell(_int(n), "num muted" if n < min_n else "num"))
            for run in runs:
                cell = cells[run.name].get(label) or {}
                row.append(_value_cell(*run.metric(key, cell), cell.get(n_key), min_n))
        rows.append(row)
    return Table(f"{title} (%, [95 % CI])", header, rows)


def _breakdown_plot(title: str, runs: list[VqaRun], cells: dict[str, dict[str, Any]], labels: list[str],
                    min_n: int, plots: Plots) -> Plot:
    """Per label: each result's value with its 95 % interval as an error bar; labels under ``min_n`` are pale."""
    colours = _colours([run.name for run in runs])
    shown = labels[:BREAKDOWN_LABELS]
    figure, axes = plots.figure(11.5, 1.3 + 0.34 * len(shown) * max(1, len(runs)) ** 0.5, ncols=2)
    offsets = [(index - (len(runs) - 1) / 2) * 0.8 / max(1, len(runs)) for index in range(len(runs))]
    for axis, (key, what, n_key) in zip(axes, BREAKDOWN_PANELS, strict=True):
        present = [label for label in shown if _label_n(cells, label, n_key)]
        for run, offset in zip(runs, offsets, strict=True):
            for position, label in enumerate(present):
                cell = cells[run.name].get(label) or {}
                value, ci = run.metric(key, cell)
                if isinstance(value, int | float):
                    pale = int(cell.get(n_key) or 0) < min_n
                    axis.errorbar([value], [position + offset], xerr=[[e] for e in _error(value, ci)], fmt="o",
                                  color=colours[run.name], alpha=0.3 if pale else 1.0, capsize=3, markersize=5,
                                  label=run.name if position == 0 else None)
        axis.set_yticks(range(len(present)), [f"{_cut(label, 28)}  (n={_label_n(cells, label, n_key)})"
                                              for label in present], fontsize=8)
        for tick, label in zip(axis.get_yticklabels(), present, strict=True):
            if _label_n(cells, label, n_key) < min_n:
                tick.set_color("#9aa5b1")
        axis.set(xlim=(-2, 102), title=what, xlabel=f"{what} (%)")
        if present:
            axis.set_ylim(len(present) - 0.5, -0.5)
            axis.legend(fontsize=8, loc="lower right")
        else:
            axis.text(0.5, 0.5, "no questions", ha="center", transform=axis.transAxes)
        plots.style(axis, grid="x")
    figure.suptitle(title, fontsize=11)
    caption = f"95 % intervals as error bars; n per label; pale: fewer than {min_n} questions."
    if len(labels) > len(shown):
        caption += f" The {len(shown)} largest of {len(labels)} labels; the table lists all."
    return plots.save(figure, f"eval-{_slug(title)}", f"{title}: values with 95 % intervals", caption, wide=True)


METRIC_NAMES = {key: label for key, label, _ in HEADLINE_METRICS}


def _comparisons(data: Any) -> tuple[str, list[dict[str, Any]]]:
    """``(A's name, [{b, n, missing, metrics}])`` from the JSON of ``vital eval compare`` (``comparisons``, one
    per B); an object with ``metrics`` alone is taken as one comparison."""
    if not isinstance(data, dict):
        return "A", []
    listed = data.get("comparisons")
    comparisons = listed if isinstance(listed, list) else [data] if isinstance(data.get("metrics"), dict) else []
    return str(data.get("a") or "A"), [c for c in comparisons if isinstance(c, dict)]


def _system(name: str) -> str:
    """``answers-tuned`` -> ``tuned`` (the round's answer files are eval/answers-NAME.jsonl)."""
    return Path(name).stem.removeprefix("answers-")


def _comparison(section: Section, data: Any, plots: Plots) -> None:
    """eval/compare.json: each paired difference with its interval and p-value, as error bars and a table."""
    a, comparisons = _comparisons(data)
    rows, plotted = [], []
    for comparison in comparisons:
        compared = f"{_system(str(comparison.get('b') or 'B'))} vs {_system(a)}"
        missing = _as_dict(comparison.get("missing"))
        section.facts.append((f"{compared}: questions compared", _int(comparison.get("n", "–"))))
        if any(missing.values()):
            section.facts.append((f"{compared}: left out", ", ".join(f"{_int(n)} without an answer in "
                                                                       f"{side.upper()}" for side, n in
                                                                       missing.items() if n)))
        for key, row in (comparison.get("metrics") or {}).items():
            if not isinstance(row, dict) or row.get("diff") is None:
                continue
            metric = METRIC_NAMES.get(key, key.replace("_", " "))
            p_value = row.get("p_value")
            significant = isinstance(p_value, int | float) and p_value < 0.05
            rows.append([Cell(compared), Cell(metric), Cell(_num(row.get("a")), "num"), Cell(_num(row.get("b")), "num"),
                         _value_cell(row["diff"], row.get("ci95")),
                         Cell(_p_value(p_value), "num good" if significant else "num"),
                         Cell(str(row.get("test") or "")), Cell(_num(row.get("n")), "num")])
            if key in METRIC_NAMES or data.get("compare") == "chat":  # chat: one row per category
                plotted.append((metric if len(comparisons) == 1 else f"{compared}: {metric}", row))
    if plotted:
        section.panels.append(_difference_plot(plotted, plots))
    section.panels.append(Table("Paired comparison", ["compared", "metric", "A", "B", "B − A [95 % CI]", "p", "test",
                                                      "n"], rows,
                                "The same questions for both (percentage points). p: McNemar's exact test for 0/1 "
                                "scores, a paired sign-flip permutation test otherwise; green below 0.05."))


def _difference_plot(plotted: list[tuple[str, dict[str, Any]]], plots: Plots) -> Plot:
    figure, axis = plots.figure(6.4, 1.3 + 0.42 * len(plotted))
    for position, (_, row) in enumerate(plotted):
        axis.errorbar([row["diff"]], [position], xerr=[[e] for e in _error(row["diff"], row.get("ci95"))],
                      fmt="o", color=TUNED_COLOUR, capsize=4)
    axis.axvline(0, color="#555", linewidth=0.8)
    axis.set_yticks(range(len(plotted)), [label for label, _ in plotted], fontsize=9)
    axis.set_ylim(len(plotted) - 0.5, -0.5)
    axis.set(title="Paired differences (B − A), with 95 % CI", xlabel="difference (percentage points)")
    plots.style(axis, grid="x")
    return plots.save(figure, "eval-compare", "paired differences with intervals")


# --- examples ------------------------------------------------------------------------------------------------


def _pick_examples(round_: RoundFiles, scores: dict[str, float],
                   selected: set[str] | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """Up to :data:`EXAMPLES` figures, one domain after another, each with the candidates to show and why.

    With a selection: the best kept and the worst dropped candidate of a figure that has both (what the
    selection keeps beside what it removes).  Without one: the best- and worst-scored candidate of a figure.
    Without scores: the figure's first candidate.
    """
    by_figure: dict[str, list[str]] = defaultdict(list)
    for cid, figure_id in round_.candidates.figure_of.items():
        by_figure[figure_id].append(cid)
    picks: dict[str, list[tuple[str, list[tuple[str, str]]]]] = defaultdict(list)
    for figure_id, ids in by_figure.items():
        ranked = sorted((cid for cid in ids if cid in scores), key=lambda cid: -scores[cid])
        if selected is not None:
            kept = [cid for cid in ranked if cid in selected]
            dropped = [cid for cid in ranked if cid not in selected]
            chosen = [("kept", kept[0]), ("dropped", dropped[-1])] if kept and dropped else []
        elif len(ranked) >= 2:
            chosen = [("highest score", ranked[0]), ("lowest score", ranked[-1])]
        else:
            chosen = [("candidate", ids[0])] if not scores else []
        if chosen:
            picks[round_.domain_of_figure(figure_id)].append((figure_id, chosen))
    spread: list[tuple[str, list[tuple[str, str]]]] = []
    for turn in range(max((len(figures) for figures in picks.values()), default=0)):
        spread += [picks[domain][turn] for domain in sorted(picks) if turn < len(picks[domain])]
        if len(spread) >= EXAMPLES:
            break
    return spread[:EXAMPLES]


def _find(records: Iterable[dict[str, Any]], ids: set[str]) -> dict[str, dict[str, Any]]:
    """The records with these ids, reading no further than the last of them."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        if str(record.get("id")) in ids:
            found[str(record["id"])] = record
            if len(found) == len(ids):
                break
    return found


def examples_section(round_: RoundFiles, plots: Plots) -> Section:
    section = Section("examples", "Examples", "A few figures as a clinician would review them: the image, the "
                      "caption, and the conversation kept beside one that was dropped.")
    missing = [name for name in ("candidates.jsonl", "figures.jsonl") if not round_.exists(name)]
    if missing and _nothing_to_show(section, round_, *missing):
        return section
    section.files += [round_.state("candidates.jsonl"), round_.state("figures.jsonl")]
    selected = round_.selected_ids if round_.exists("selected.json") else None
    scores = round_.selection_scores[1] if selected is not None else round_.judge_scores
    picks = _pick_examples(round_, scores, selected)
    if not picks:
        section.notes.append("No figure has both a kept and a dropped candidate." if round_.exists("selected.json")
                             else "No figure has two scored candidates to contrast.")
        return section
    wanted = {cid for _, chosen in picks for _, cid in chosen}
    candidates = _find(round_.records("candidates.jsonl"), wanted)
    figures = _find(round_.records("figures.jsonl"), {figure_id for figure_id, _ in picks})
    for figure_id, chosen in picks:
        figure = figures.get(figure_id, {})
        example = Example(figure_id, round_.domain_of_figure(figure_id), str(figure.get("caption") or ""), None)
        image = resolve_image(figure.get("image"), round_.dir)
        if image is None:
            example.thumbnail_problem = "no image"
        else:
            from vital.figures.images import ImageError

            try:
                example.thumbnail = plots.thumbnail(image, figure_id)
            except ImageError as exc:
                example.thumbnail_problem = str(exc)
        for (label, cid), tone in zip(chosen, ("good", "poor"), strict=False):
            turns = (candidates.get(cid) or {}).get("conversations") or []
            example.conversations.append(Shown(label, cid, _num(scores.get(cid), 2), [
                Turn("Q" if turn.get("from") == "human" else "A",
                     _cut(strip_image_token(str(turn.get("value", ""))), TURN_CHARACTERS))
                for turn in turns if isinstance(turn, dict)], tone))
        section.examples.append(example)
    return section


SECTIONS: tuple[SectionFunction, ...] = (
    summary_section,
    corpus_section,
    sample_section,
    generation_section,
    judge_section,
    clinician_section,
    selector_section,
    selection_section,
    tune_section,
    evaluation_section,
    examples_section,
)
"""The page, in order: one function per section."""


def _build(function: SectionFunction, round_: RoundFiles, plots: Plots) -> Section:
    """One section; one that cannot be drawn becomes a section saying why (and a warning)."""
    try:
        return function(round_, plots)
    except Exception as exc:  # noqa: BLE001 - a damaged or unfamiliar file must not lose the rest of the report
        name = function.__name__.removesuffix("_section")
        warn(f"report: the {name} section could not be drawn: {exc}")
        return Section(name, name.replace("_", " ").capitalize(), error=f"{type(exc).__name__}: {exc}")


def write_report(dir: Path) -> Path:
    """Write ``dir/report.html`` (and its plots in ``dir/report/``) from the round's files; returns its path."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    dir = Path(dir)
    if not dir.is_dir():
        raise InputError("not a folder (a round's folder holds vital.toml and what its stages wrote)", path=dir)
    round_ = RoundFiles(dir)
    plots = Plots(dir / "report", "report")
    sections = [_build(function, round_, plots) for function in SECTIONS]
    plots.remove_stale()
    environment = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                              autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
    page = environment.get_template("report.html").render(
        title=dir.resolve().name, folder=str(dir.resolve()), sections=sections, as_of=round_.last_finished,
    )
    out = dir / "report.html"
    if not (out.is_file() and out.read_text(encoding="utf-8") == page):
        with atomic_writer(out) as handle:
            handle.write(page)
    return out
