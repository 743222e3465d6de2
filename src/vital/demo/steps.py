"""The demo's steps, in pipeline order (each stage adds its own)."""

from __future__ import annotations

from vital.demo import Workspace, step


@step("Build a corpus from real medical images that ship in PyPI packages")
def corpus(workspace: Workspace) -> None:
    from vital.demo.corpus import FIGURES, build_corpus

    corpus_csv, demonstrations = build_corpus(workspace.root)
    workspace.wrote(corpus_csv, f"{len(FIGURES)} figures (pydicom, scikit-image, nilearn images; our captions)")
    workspace.wrote(demonstrations, "hand-written demonstration conversations")


@step("Import figures (vital figures import)")
def import_figures(workspace: Workspace) -> None:
    from vital.figures import import_figures

    summary = import_figures(workspace.root / "corpus.csv", workspace.figures, require_images=True)
    domains = ", ".join(f"{d} {n}" for d, n in sorted(summary.per_domain.items()))
    workspace.wrote(workspace.figures, f"{summary.figures} figures, {summary.images_found} images ({domains})")
    summary = import_figures(workspace.root / "demonstrations.jsonl", workspace.demos, require_images=True)
    workspace.wrote(workspace.demos, f"{summary.with_conversations} demonstrations")


@step("Sample a diverse subset for clinicians (vital sample)")
def sample(workspace: Workspace) -> None:
    from vital.sample import sample_figures

    summary = sample_figures(workspace.figures, workspace.sample, n=8, clusters=4, seed=0)
    workspace.wrote(
        workspace.sample,
        f"{summary.picked} of {summary.n_figures} figures from {summary.n_clusters} clusters "
        f"(per cluster: {dict(sorted(summary.cluster_picked.items()))})",
    )


# Stage steps follow, in pipeline order: generate, judge, annotate, selector, select.
