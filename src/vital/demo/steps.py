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

# (generate and judge steps go above the annotate step; selector and select below it)


@step("Generate candidate conversations (vital generate --backend caption)")
def generate_candidates(workspace: Workspace) -> None:
    from vital.figures import read_figures
    from vital.generate import (
        GenerateConfig,
        build_messages,
        elide_images,
        generate,
        load_demonstrations,
        make_policy,
    )
    from vital.jsonl import write_json_atomic

    say = workspace.console.print
    if workspace.demos.exists():
        # Offline there is no model to send it to; show what the openai backend would send.
        demos = load_demonstrations(workspace.demos)
        figure = next(read_figures(workspace.figures))
        chosen = make_policy("per-domain", demos)(figure, 0)
        preview = workspace.root / "generation-request.json"
        write_json_atomic(preview, {"figure": figure.id, "demo_ids": [d.id for d in chosen],
                                    "messages": elide_images(build_messages(figure, chosen, 512))})
        workspace.wrote(preview, f"the request a vision-language model would get for {figure.id} "
                                 f"({len(chosen)} demonstrations, chosen per domain)")
    config = GenerateConfig(backend="caption", candidates=3)
    report = generate(workspace.figures, workspace.candidates, config, console=workspace.console)
    count = report.stats.done + report.stats.skipped
    workspace.wrote(workspace.candidates, f"{count} candidates (3 per figure), written offline from captions "
                                          "and mentions")
    say("  With a model server: vital generate figures.jsonl --out candidates.jsonl --demos demos.jsonl "
        "--base-url http://127.0.0.1:8000/v1 --model MODEL --concurrency 32", soft_wrap=True, highlight=False)


@step("Judge the candidates (vital judge --backend heuristic)")
def judge_candidates(workspace: Workspace) -> None:
    from vital.judge import JudgeConfig, judge

    config = JudgeConfig(backend="heuristic")
    report = judge(workspace.candidates, workspace.figures, workspace.scores, config,
                   console=workspace.console)
    workspace.wrote(workspace.scores, f"{report.stats.done + report.stats.skipped} grounding scores (0-10) "
                                      "from the offline heuristic judge")
    preferences = workspace.root / "model-preferences.jsonl"
    report = judge(workspace.candidates, workspace.figures, preferences,
                   JudgeConfig(backend="heuristic", pairwise=True), console=workspace.console)
    workspace.wrote(preferences, f"{report.written} model preferences; {report.ties} pairs tied "
                                 "(judged in both orders)")


@step("Prepare clinician annotation (vital annotate)")
def annotate(workspace: Workspace) -> None:
    from vital.annotate import AnnotationDB, add_user, issue_login_token, load_corpus, login_url

    path = workspace.root / "annotations.db"
    database = AnnotationDB(path)
    summary = load_corpus(database, workspace.figures, workspace.candidates)
    items = summary.total_items
    workspace.wrote(path, f"{items['demos']} demonstration items and {items['compare']} comparison items "
                          f"from {summary.candidates} candidates")
    user, _ = add_user(database, "clinician", admin=True)
    link = login_url("http://127.0.0.1:8000", issue_login_token(database, user))
    say = workspace.console.print
    say("  To annotate in a browser, start the app (it reloads the files idempotently):")
    say(f"    vital annotate serve --db {path} --figures {workspace.figures} "
        f"--candidates {workspace.candidates} --overlap 2", soft_wrap=True, highlight=False)
    say("  and open this one-time login link (add annotators with `vital annotate add-user NAME --db ...`):")
    say(f"    {link}", soft_wrap=True, highlight=False)
    say(f"  Afterwards: vital annotate stats --db {path} --scores {workspace.scores}\n"
        f"              vital annotate export --db {path} --kind preferences --out preferences.jsonl",
        soft_wrap=True, highlight=False)
