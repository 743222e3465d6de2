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
    from vital.figures import ImportConfig, import_figures

    summary = import_figures(workspace.root / "corpus.csv", workspace.figures, ImportConfig(require_images=True))
    domains = ", ".join(f"{d} {n}" for d, n in sorted(summary.per_domain.items()))
    workspace.wrote(workspace.figures, f"{summary.figures} figures, {summary.images_found} images ({domains})")
    summary = import_figures(workspace.root / "demonstrations.jsonl", workspace.demos, ImportConfig(require_images=True))
    workspace.wrote(workspace.demos, f"{summary.demonstrations} demonstrations")


@step("Sample a diverse subset for clinicians (vital sample)")
def sample(workspace: Workspace) -> None:
    from vital.sampling import SampleConfig, sample

    summary = sample(workspace.figures, workspace.sample,
                     SampleConfig(n=8, clusters=4, seed=0, cache_dir=workspace.root / "feature-cache"))
    workspace.wrote(
        workspace.sample,
        f"{summary.picked} of {summary.n_figures} figures from {summary.n_clusters} clusters "
        f"(per cluster: {dict(sorted(summary.cluster_picked.items()))})",
    )


@step("Generate candidate conversations (vital generate --backend caption)")
def generate_candidates(workspace: Workspace) -> None:
    from vital.generation import (
        GenerateConfig,
        build_messages,
        elide_images,
        generate,
        load_demonstrations,
        make_policy,
    )
    from vital.jsonl import write_json_atomic
    from vital.records import read_figures

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
    report = generate(workspace.figures, workspace.candidates, config)
    count = report.stats.done + report.stats.skipped
    workspace.wrote(workspace.candidates, f"{count} candidates (3 per figure), written offline from captions "
                                          "and mentions")
    say("  With a model server: vital generate figures.jsonl --out candidates.jsonl --demos demos.jsonl "
        "--base-url http://127.0.0.1:8000/v1 --model MODEL --concurrency 32", soft_wrap=True, highlight=False)


@step("Judge the candidates (vital judge --backend heuristic)")
def judge_candidates(workspace: Workspace) -> None:
    from vital.judging import JudgeConfig, judge

    config = JudgeConfig(backend="heuristic")
    report = judge(workspace.candidates, workspace.figures, workspace.scores, config)
    workspace.wrote(workspace.scores, f"{report.stats.done + report.stats.skipped} grounding scores (0-10) "
                                      "from the offline heuristic judge")
    preferences = workspace.root / "model-preferences.jsonl"
    report = judge(workspace.candidates, workspace.figures, preferences,
                   JudgeConfig(backend="heuristic", pairwise=True))
    workspace.wrote(preferences, f"{report.written} model preferences; {report.ties} pairs tied "
                                 "(judged in both orders)")


@step("Prepare clinician annotation (vital annotate)")
def annotate(workspace: Workspace) -> None:
    from vital.annotate import AnnotationDB, ServeConfig, add_user, issue_login_token, load_corpus, login_url

    path = workspace.root / "annotations.db"
    database = AnnotationDB(path)
    summary = load_corpus(database, workspace.figures, workspace.candidates)
    items = summary.total_items
    workspace.wrote(path, f"{items['demos']} demonstration items and {items['compare']} comparison items "
                          f"from {summary.candidates} candidates")
    user, _ = add_user(database, "clinician", admin=True)
    link = login_url(ServeConfig().url, issue_login_token(database, user))
    say = workspace.console.print
    say("  To annotate in a browser, start the app (it reloads the files idempotently):")
    say(f"    vital annotate serve --db {path} --figures {workspace.figures} "
        f"--candidates {workspace.candidates} --overlap 2", soft_wrap=True, highlight=False)
    say("  and open this one-time login link (add annotators with `vital annotate add-user NAME --db ...`):")
    say(f"    {link}", soft_wrap=True, highlight=False)
    say(f"  Afterwards: vital annotate stats --db {path} --scores {workspace.scores}\n"
        f"              vital annotate export --db {path} --kind preferences --out preferences.jsonl",
        soft_wrap=True, highlight=False)


@step("Train the selector on judge scores and any clinician preferences (vital selector train)")
def train_selector(workspace: Workspace) -> None:
    from vital.records import read_preferences
    from vital.selector import Selector, SelectorConfig

    clinician = workspace.root / "preferences.jsonl"  # written by `vital annotate export --kind preferences`
    verdicts = workspace.root / "model-preferences.jsonl"  # the judge's pairwise verdicts
    preferences = [p for path in (clinician, verdicts) if path.exists() for p in read_preferences(path)]
    config = SelectorConfig(human_weight=100, epochs=6)
    selector = Selector(config, cache_dir=workspace.root / "feature-cache").fit(
        workspace.candidates, workspace.figures, scores=workspace.scores, preferences=preferences)
    model_dir = selector.save(workspace.root / "selector")
    metrics = selector.metrics
    held = metrics["held_out"] or {"agreement": float("nan"), "pairs": 0}
    source = "clinician" if metrics["held_out_source"] == "human" else "judge"
    workspace.wrote(
        model_dir,
        f"head over {selector.input_dim} features (MiniLM text, image descriptor) trained on "
        f"{metrics['pairs']['human_train']} clinician and {metrics['pairs']['model_pairs']} judge pairs "
        f"(scores and pairwise verdicts); "
        f"agreement {held['agreement']:.2f} on {held['pairs']} held-out {source} pairs",
    )
    if not clinician.exists():
        workspace.console.print(
            "  No clinician preferences yet: export them from the annotation app to preferences.jsonl "
            "and run this step again to mix them in (weight 100).",
            highlight=False,
        )
    workspace.wrote(model_dir / "training_curves.png", "loss and agreement per epoch")


@step("Score and select, export LLaVA data (vital selector score, vital select)")
def select_data(workspace: Workspace) -> None:
    from vital.records import figure_index, read_candidates
    from vital.selection import SelectConfig, select
    from vital.selector import Selector

    figures = figure_index(workspace.figures)
    candidates = read_candidates(workspace.candidates, figures)
    selector = Selector.load(workspace.root / "selector", cache_dir=workspace.root / "feature-cache")
    scored = selector.write_scores(candidates, figures, workspace.root / "selector-scores.jsonl")
    scores_path = scored.out
    workspace.wrote(scores_path, f"{scored.scored} selector scores ({sum(scored.encoded.values())} inputs "
                                 "encoded; the rest came from the feature cache)")
    result = select(candidates, scores_path, workspace.root / "selected.json",
                    SelectConfig(top_fraction=0.5, per_figure=2), figures=figures)
    workspace.wrote(result.out, f"{result.kept} of {result.considered} conversations in LLaVA format (top half, "
                                "at most 2 per figure)")
    workspace.wrote(result.report, "selection report: per-domain counts, score histogram with the cut, examples")


@step("Evaluate: VQA metrics in both scoring modes, and a report (vital eval vqa, vital eval report)")
def evaluate(workspace: Workspace) -> None:
    from collections import Counter

    from vital.evaluate import ReportConfig, VqaConfig, eval_report, eval_vqa
    from vital.jsonl import write_json_atomic, write_jsonl_atomic
    from vital.records import read_figures

    # A small VQA set about the demo figures, in LLaVA-Med's conversation format: what kind of image each
    # one is (open), and whether it is of a given kind (closed; every other one asks about a kind it is not).
    spoken = {"chest_xray": "chest x-ray", "ct_scan": "ct scan", "gross": "gross specimen"}
    figures = list(read_figures(workspace.figures))
    kinds = [spoken.get(f.domains[0], f.domains[0]) if f.domains else "other" for f in figures]
    questions, answers = [], []
    for index, (figure, kind) in enumerate(zip(figures, kinds, strict=True)):
        asked = next((k for k in kinds[index + 1 :] + kinds[:index] if k != kind), kind) if index % 2 else kind
        for suffix, text, answer, answer_type in (
            ("kind", "What kind of image is this?", kind, "OPEN"),
            ("is", f"Is this a {asked} image?", "yes" if asked == kind else "no", "CLOSED"),
        ):
            questions.append({"id": f"{figure.id}/{suffix}", "image": figure.image, "answer_type": answer_type,
                              "conversations": [{"from": "human", "value": f"<image>\n{text}"},
                                                {"from": "gpt", "value": answer}]})
        # A prior baseline that never looks at the image: "yes", and the commonest kind of the other figures.
        others = Counter(kinds[:index] + kinds[index + 1:]).most_common(1)[0][0]
        answers += [{"question_id": f"{figure.id}/kind", "text": f"Assistant: {others}."},
                    {"question_id": f"{figure.id}/is", "text": "Assistant: Yes"}]
    gt, pred = workspace.root / "vqa-questions.json", workspace.root / "vqa-answers-prior-baseline.jsonl"
    write_json_atomic(gt, questions)
    write_jsonl_atomic(pred, answers)
    workspace.wrote(gt, f"{len(questions)} questions about the demo figures (LLaVA-Med conversation format)")
    workspace.wrote(pred, "answers of a prior baseline that ignores the image (a floor any model must beat)")
    results = []
    for name, compat in (("default", None), ("llava-med", "llava-med")):
        result = eval_vqa(gt, pred, VqaConfig(compat=compat))
        path = workspace.root / f"vqa-results-{name}.json"
        write_json_atomic(path, result.to_json())
        results.append((f"prior baseline, {name} scoring", path))
        m = result.metrics
        workspace.wrote(path, f"{name} scoring: open recall {m['recall']:.1f}, closed accuracy "
                              f"{m['closed_accuracy']:.1f}, open precision {m['precision']:.1f} "
                              "('assistant:' counts as a word only in llava-med scoring)")
    report = eval_report(results, workspace.root / "eval-report", ReportConfig(title="Demo evaluation"))
    workspace.wrote(report.out, "Markdown report with per-metric bar charts (PNG), intervals as error bars")
    workspace.console.print(
        f"  With a model: vital eval answer --questions {gt} --backend transformers --model LLAVA_DIR "
        f"--out answers.jsonl, then vital eval vqa --gt {gt} --pred answers.jsonl",
        soft_wrap=True, highlight=False,
    )
