"""The selection report beside an export: ``<out>.report.md`` (counts per domain, why candidates were dropped,
examples around the cut) and ``<out>.scores.png`` (the score histogram with the cut marked)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vital.conversation import conversation_text
from vital.jsonl import atomic_writer, sibling_path
from vital.selection.export import LlavaExport
from vital.selection.policies import Decision, Selection

EXAMPLE_CHARACTERS = 220


def plot_score_histogram(selection: Selection, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [d.score for d in selection.decisions if d.kept and d.score is not None]
    dropped = [d.score for d in selection.decisions if not d.kept and d.score is not None]
    figure, axis = plt.subplots(figsize=(6, 3.4))
    values = kept + dropped
    bins = 40 if len(set(values)) > 12 else max(len(set(values)), 1) * 2
    span = (min(values), max(values)) if values else (0, 1)
    axis.hist([kept, dropped], bins=bins, range=span, stacked=True, label=["kept", "dropped"],
              color=["tab:green", "tab:grey"])
    cut = selection.cut
    if cut is not None:
        axis.axvline(cut, color="tab:red", linestyle="--", label=f"cut ({cut:.3g})")
    axis.set(xlabel="score", ylabel="candidates", title="scores and the selection cut")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _example(decision: Decision) -> str:
    """One Markdown list item: id, domain, score, why dropped, and the first exchange."""
    text = conversation_text(decision.candidate.conversations[:2], limit=EXAMPLE_CHARACTERS)
    text = text.replace("\n", " ").replace("|", "/")
    score = f"{decision.score:.3f}" if decision.score is not None else "–"
    why = f" — dropped: {decision.reason}" if not decision.kept else ""
    return f"- `{decision.candidate.id}` ({decision.domain}, score {score}{why}): {text}"


def _policy_summary(selection: Selection) -> str:
    config = selection.config
    settings = [
        f"top fraction {config.top_fraction}" if config.top_fraction is not None else None,
        f"top k {config.top_k}" if config.top_k is not None else None,
        f"at most {config.per_figure} per figure" if config.per_figure else None,
        f"minimum score {config.min_score}" if config.min_score is not None else None,
        f"domain quotas {config.domain_quotas}" if config.domain_quota else None,
        "balanced domains" if config.balance_domains else None,
        f"near-duplicates at Jaccard >= {config.near_duplicate}",
    ]
    return ", ".join(s for s in settings if s)


def write_report(selection: Selection, export: LlavaExport, *, examples: int = 3) -> Path:
    """``<out>.report.md`` and ``<out>.scores.png`` for an export; returns the report's path."""
    out = export.out
    report = sibling_path(out, "report.md")
    histogram = plot_score_histogram(selection, sibling_path(out, "scores.png"))
    reasons = Counter(d.reason for d in selection.decisions if not d.kept)
    kept = sorted(selection.kept, key=lambda d: -(d.score or 0))
    dropped = sorted((d for d in selection.decisions if not d.kept and d.score is not None),
                     key=lambda d: -(d.score or 0))
    cut = f"{selection.cut:.4g}" if selection.cut is not None else "none"
    lines = [
        f"# Selection report for {out.name}",
        "",
        f"Kept **{len(kept)}** of {len(selection.decisions)} candidates "
        f"(budget {selection.budget}; lowest kept score {cut}). Policy: {_policy_summary(selection)}.",
    ]
    if export.merged or export.merge_duplicates:
        lines.append(f"Merged {export.merged} records from other datasets "
                     f"({export.merge_duplicates} duplicates removed).")
    lines += [
        "",
        f"![score histogram]({histogram.name})",
        "",
        "| domain | kept | dropped |",
        "| --- | ---: | ---: |",
        *(f"| {domain} | {c['kept']} | {c['dropped']} |" for domain, c in selection.per_domain().items()),
        "",
        "| why dropped | candidates |",
        "| --- | ---: |",
        *(f"| {reason} | {count} |" for reason, count in reasons.most_common()),
        "",
        "## Kept, best first",
        *(_example(d) for d in kept[:examples]),
        "",
        "## Kept, just above the cut",
        *(_example(d) for d in kept[-examples:]),
        "",
        "## Dropped, best first",
        *(_example(d) for d in dropped[:examples]),
        "",
        "## Dropped, lowest scores",
        *(_example(d) for d in dropped[-examples:]),
        "",
    ]
    with atomic_writer(report) as handle:
        handle.write("\n".join(lines))
    return report
