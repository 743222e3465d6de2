"""The stages of a round, in order, each calling one stage of the Python API with fixed file names.

=============  ==================================  ============================================
stage          reads                               writes (in the round's folder)
=============  ==================================  ============================================
figures        [figures] src, demos                figures.jsonl, demos.jsonl
sample         figures.jsonl                       sample.jsonl
draft          sample.jsonl                        draft-candidates.jsonl (only when clinicians
                                                   choose demonstrations: require_demonstrations)
generate       figures.jsonl, demonstrations       candidates.jsonl
judge          candidates.jsonl, figures.jsonl     scores.jsonl (model-preferences.jsonl with
                                                   pairwise = true)
annotate       sample, candidates, the database    annotations.db, preferences.jsonl,
                                                   clinician-demos.jsonl
selector       candidates, figures, judge and      selector/, selector-scores.jsonl
               clinician preferences
select         candidates, selector (or judge)     selected.json (+ report, plot)
               scores, figures
tune           selected.json, [tune] base          tuned/
eval           the tuned model (and the base)      eval/
report         everything above                    report.html, report/
=============  ==================================  ============================================

Each stage says which files it reads (its inputs, hashed for the skip rule)
and which settings change what it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.pipeline.config import AnnotateSettings, FiguresInputs, Round, TuneInputs
from vital.progress import Progress


@dataclass
class Context:
    round: Round
    dir: Path
    progress: Progress | None
    say: Callable[[str], None]
    no_wait: bool = False

    def path(self, name: str) -> Path:
        return self.dir / name

    def section(self, name: str) -> Any:
        return self.round[name]

    def config(self, section: str, cls: type[Any]) -> Any:
        return self.round[section].get(cls)


@dataclass
class Outcome:
    status: str = "done"
    outputs: list[Path] = field(default_factory=list)
    """The files written (default: the stage's declared outputs)."""
    counts: dict[str, Any] = field(default_factory=dict)
    failed: int = 0
    failures: Path | None = None
    notes: list[str] = field(default_factory=list)


class Stage:
    """One stage of a round; subclasses say what it reads, what it writes and how it runs."""

    name = ""
    section = ""
    needs: tuple[str, ...] = ()
    """Stages whose output this one reads; when one of them is off, failed or waiting, this one does not run."""
    optional: tuple[str, ...] = ()
    """Of ``needs``, those it can do without (it then reads what exists)."""
    appends = False
    """Appends to its output record by record (and resumes); a change of settings starts a fresh output."""

    def configured(self, round_: Round) -> bool:
        return round_.enabled(self.section or self.name)

    def off_reason(self, round_: Round) -> str:
        """Why the stage does not run, when :meth:`configured` says it does not."""
        section = self.section or self.name
        return "switched off (enabled = false)" if section in round_.sections else f"no [{section}] section"

    def settings(self, context: Context) -> dict[str, Any]:
        return context.round[self.section or self.name].fingerprint_settings(context.dir)

    def inputs(self, context: Context) -> list[Path]:
        return []

    def outputs(self, context: Context) -> list[Path]:
        return []

    def run(self, context: Context) -> Outcome:
        raise NotImplementedError


def _existing(*paths: Path) -> list[Path]:
    return [path for path in paths if path.exists()]


class FiguresStage(Stage):
    name = "figures"

    def inputs(self, context: Context) -> list[Path]:
        inputs = context.config("figures", FiguresInputs)
        return [inputs.src, *([inputs.demos] if inputs.demos else [])]

    def outputs(self, context: Context) -> list[Path]:
        inputs = context.config("figures", FiguresInputs)
        return [context.path("figures.jsonl"), *([context.path("demos.jsonl")] if inputs.demos else [])]

    def run(self, context: Context) -> Outcome:
        import vital

        inputs = context.config("figures", FiguresInputs)
        config = context.config("figures", vital.ImportConfig)
        result = vital.import_figures(inputs.src, context.path("figures.jsonl"), config, progress=context.progress)
        outcome = Outcome(counts={"figures": result.figures, "per_domain": dict(result.per_domain),
                                  "images_found": result.images_found},
                          failed=result.failed, failures=result.failures)
        if result.failed:
            outcome.notes.append(f"{result.failed} figures have no readable image (listed in {result.failures})")
        if inputs.demos:
            demos = vital.import_figures(inputs.demos, context.path("demos.jsonl"), config,
                                         progress=context.progress)
            outcome.counts["demonstrations"] = demos.demonstrations
            outcome.counts["invalid_demonstrations"] = len(demos.invalid_demonstrations)
            if demos.invalid_demonstrations:
                outcome.notes.append(f"{len(demos.invalid_demonstrations)} demonstrations break the turn rules "
                                     "and are left out of prompts")
        return outcome


class SampleStage(Stage):
    name = "sample"
    needs = ("figures",)

    def inputs(self, context: Context) -> list[Path]:
        return [context.path("figures.jsonl")]

    def outputs(self, context: Context) -> list[Path]:
        return [context.path("sample.jsonl")]

    def run(self, context: Context) -> Outcome:
        from dataclasses import replace

        import vital

        config = context.config("sample", vital.SampleConfig)
        if config.cache_dir is None:
            config = replace(config, cache_dir=context.path("feature-cache"))
        result = vital.sample(context.path("figures.jsonl"), context.path("sample.jsonl"), config,
                              progress=context.progress)
        return Outcome(counts={"figures": result.n_figures, "picked": result.picked, "clusters": result.n_clusters,
                               "clusters_covered": len(result.cluster_picked),
                               "domain_picked": dict(result.domain_picked)})


def _annotate(context: Context) -> AnnotateSettings | None:
    return context.config("annotate", AnnotateSettings) if context.round.enabled("annotate") else None


def _wants_clinician_demos(context: Context) -> bool:
    settings = _annotate(context)
    return settings is not None and settings.require_demonstrations > 0 and not context.no_wait


def _generate(context: Context, figures: Path, out: Path, demos: Path | None) -> Outcome:
    from dataclasses import replace

    import vital

    config = replace(context.config("generate", vital.GenerateConfig), demos=demos)
    offline = config.backend != "openai"
    engine = None if offline else context.config("generate", vital.EngineConfig)
    result = vital.generate(figures, out, config, engine, progress=context.progress)
    stats = result.stats
    counts = {"candidates": stats.done + stats.skipped, "new": stats.done, "resumed": stats.skipped}
    if stats.usage is not None:
        counts.update({"requests": stats.usage.requests, "prompt_tokens": stats.usage.prompt_tokens,
                       "completion_tokens": stats.usage.completion_tokens, "cost_usd": stats.cost,
                       "model": stats.model})
    return Outcome(counts=counts, failed=result.failed, failures=result.failures)


class DraftStage(Stage):
    """Candidates for the sample only, for clinicians to choose demonstrations from (BioMed-VITAL's stage 1)."""

    name = "draft"
    section = "generate"
    needs = ("sample",)
    appends = True

    def configured(self, round_: Round) -> bool:
        return round_.enabled("generate") and round_.enabled("annotate") and round_.enabled("sample") and (
            round_["annotate"].get(AnnotateSettings).require_demonstrations > 0)

    def off_reason(self, round_: Round) -> str:
        return ("only when clinicians choose the demonstrations ([annotate] require_demonstrations > 0, with "
                "[sample] and [generate])")

    def inputs(self, context: Context) -> list[Path]:
        return _existing(context.path("sample.jsonl"), context.path("demos.jsonl"))

    def outputs(self, context: Context) -> list[Path]:
        return [context.path("draft-candidates.jsonl")]

    def run(self, context: Context) -> Outcome:
        return _generate(context, context.path("sample.jsonl"), context.path("draft-candidates.jsonl"),
                         GenerateStage().imported_demos(context))


class GenerateStage(Stage):
    name = "generate"
    needs = ("figures", "annotate_demos")
    optional = ("annotate_demos",)
    appends = True

    def _demos(self, context: Context) -> Path | None:
        """Clinician-chosen demonstrations when the round asks for them, else the imported ones (a model
        backend only: the offline caption backend writes from captions alone)."""
        import vital

        if context.config("generate", vital.GenerateConfig).backend != "openai":
            return None
        if _wants_clinician_demos(context):
            return context.path("clinician-demos.jsonl")
        return self.imported_demos(context)

    def imported_demos(self, context: Context) -> Path | None:
        import vital

        demos = context.path("demos.jsonl")
        backend = context.config("generate", vital.GenerateConfig).backend
        return demos if demos.exists() and backend == "openai" else None

    def inputs(self, context: Context) -> list[Path]:
        demos = self._demos(context)
        return [context.path("figures.jsonl"), *([demos] if demos else [])]

    def outputs(self, context: Context) -> list[Path]:
        return [context.path("candidates.jsonl")]

    def run(self, context: Context) -> Outcome:
        return _generate(context, context.path("figures.jsonl"), context.path("candidates.jsonl"),
                         self._demos(context))


def judge_output(context: Context) -> Path:
    import vital

    pairwise = context.config("judge", vital.JudgeConfig).pairwise
    return context.path("model-preferences.jsonl" if pairwise else "scores.jsonl")


class JudgeStage(Stage):
    name = "judge"
    needs = ("generate",)
    appends = True

    def inputs(self, context: Context) -> list[Path]:
        return [context.path("candidates.jsonl"), context.path("figures.jsonl")]

    def outputs(self, context: Context) -> list[Path]:
        return [judge_output(context)]

    def run(self, context: Context) -> Outcome:
        import vital

        config = context.config("judge", vital.JudgeConfig)
        engine = None if config.backend != "openai" else context.config("judge", vital.EngineConfig)
        result = vital.judge(context.path("candidates.jsonl"), context.path("figures.jsonl"), judge_output(context),
                             config, engine, progress=context.progress)
        counts = {"written": result.written, "ties": result.ties}
        if result.stats.usage is not None:
            counts.update({"requests": result.stats.usage.requests, "cost_usd": result.stats.cost})
        return Outcome(counts=counts, failed=result.failed, failures=result.failures)




def clinician_preferences(context: Context) -> Path:
    return context.path("preferences.jsonl")


class SelectorStage(Stage):
    """Train on the judge's scores or verdicts and the clinicians' preferences, then score every candidate."""

    name = "selector"
    needs = ("judge", "annotate")
    optional = ("annotate",)

    def _preferences(self, context: Context) -> list[Path]:
        return _existing(clinician_preferences(context), context.path("model-preferences.jsonl"))

    def inputs(self, context: Context) -> list[Path]:
        return [context.path("candidates.jsonl"), context.path("figures.jsonl"),
                *_existing(context.path("scores.jsonl")), *self._preferences(context)]

    def outputs(self, context: Context) -> list[Path]:
        return [context.path("selector"), context.path("selector-scores.jsonl")]

    def run(self, context: Context) -> Outcome:
        import vital
        from vital.records import read_preferences

        config = context.config("selector", vital.SelectorConfig)
        candidates, figures = context.path("candidates.jsonl"), context.path("figures.jsonl")
        scores = context.path("scores.jsonl")
        preferences = [p for path in self._preferences(context) for p in read_preferences(path)]
        selector = vital.Selector(config).fit(candidates, figures, scores=scores if scores.exists() else None,
                                              preferences=preferences, progress=context.progress)
        selector.save(context.path("selector"))
        written = selector.write_scores(candidates, figures, context.path("selector-scores.jsonl"),
                                        judge="selector", progress=context.progress)
        metrics = selector.metrics
        held = metrics.get("held_out") or {}
        judge = metrics.get("judge_on_held_out") or {}
        counts = {"scored": written.scored, "pairs": metrics.get("pairs"),
                  "held_out_source": metrics.get("held_out_source"),
                  "held_out_agreement": held.get("agreement"), "judge_agreement": judge.get("agreement")}
        return Outcome(counts=counts)


class SelectStage(Stage):
    name = "select"
    needs = ("generate", "selector", "judge")
    optional = ("selector",)

    def _scores(self, context: Context) -> Path:
        scores = context.path("selector-scores.jsonl")
        return scores if context.round.enabled("selector") else judge_output(context)

    def inputs(self, context: Context) -> list[Path]:
        return [context.path("candidates.jsonl"), self._scores(context), context.path("figures.jsonl")]

    def outputs(self, context: Context) -> list[Path]:
        out = context.path("selected.json")
        return [out, out.with_name("selected.report.md")]

    def run(self, context: Context) -> Outcome:
        import vital

        config = context.config("select", vital.SelectConfig)
        result = vital.select(context.path("candidates.jsonl"), self._scores(context), context.path("selected.json"),
                              config, figures=context.path("figures.jsonl"), progress=context.progress)
        counts = {"kept": result.kept, "considered": result.considered, "cut": result.cut, "source": result.source,
                  "domains": {domain: dict(counter) for domain, counter in result.domains.items()}}
        return Outcome(counts=counts, failed=result.failed, failures=result.failures)



def _database(context: Context) -> str:
    """The annotation database: a URL as written, a file relative to the round's folder."""
    db = context.config("annotate", AnnotateSettings).db
    return db if "://" in db else str(context.dir / db)


def _image_folders(context: Context) -> list[Path]:
    """Where the corpus's images are: the folders the clinicians' browser may be shown images from."""
    import vital

    inputs = context.config("figures", FiguresInputs)
    images = context.config("figures", vital.ImportConfig).images
    return [images or inputs.src.resolve().parent, *([inputs.demos.resolve().parent] if inputs.demos else [])]


def _gate_instructions(context: Context, candidates: Path, what: str) -> list[str]:
    from vital.annotate.config import ServeConfig

    serve = context.config("annotate", ServeConfig)
    db = _database(context)
    figures = context.path("sample.jsonl") if context.round.enabled("sample") else context.path("figures.jsonl")
    images = " ".join(f"--images {folder}" for folder in _image_folders(context))
    return [
        f"waiting for clinicians: {what}",
        f"  start the app:    vital annotate serve --db {db} --figures {figures} --candidates {candidates} "
        f"{images} --overlap {serve.overlap} --port {serve.port}",
        f"  add a clinician:  vital annotate add-user NAME --db {db} --public-url {serve.url}  (prints a login link)",
        f"  then run again:   vital run {context.round.path}   (--no-wait goes on without them)",
    ]


def _replace_if_changed(fresh: Path, target: Path) -> None:
    """Move ``fresh`` onto ``target`` unless their contents are equal (then ``target`` keeps its mtime)."""
    if target.exists() and target.read_bytes() == fresh.read_bytes():
        fresh.unlink()
    else:
        fresh.replace(target)


class _AnnotationStage(Stage):
    """Load candidates of the sampled figures into the annotation database, export what clinicians gave, and
    wait while they have given fewer than the round requires."""

    section = "annotate"
    kind = ""
    """What the clinicians give here: demonstrations or preferences."""
    candidates_name = ""
    export_name = ""
    required_setting = ""
    """The ``[annotate]`` setting that says how many the round waits for."""

    def _figures(self, context: Context) -> Path:
        return context.path("sample.jsonl") if context.round.enabled("sample") else context.path("figures.jsonl")

    def inputs(self, context: Context) -> list[Path]:
        return [self._figures(context), context.path(self.candidates_name)]

    def settings(self, context: Context) -> dict[str, Any]:
        """The settings, and what the clinicians have given so far: new answers are a change."""
        from vital.annotate import annotation_counts

        db = _database(context)
        counts = annotation_counts(db) if "://" in db or Path(db).exists() else None
        answers = {kind: n for kind, n in counts.answers.items() if n} if counts else {}
        return {**super().settings(context), "answers": answers}

    def outputs(self, context: Context) -> list[Path]:
        return [context.path(self.export_name)]

    def run(self, context: Context) -> Outcome:
        from vital.annotate import annotation_counts, export_demonstrations, export_preferences, load_corpus
        from vital.records import figure_index, read_candidates

        figures = figure_index(self._figures(context))
        candidates = [c for c in read_candidates(context.path(self.candidates_name)) if c.figure_id in figures]
        db = _database(context)
        loaded = load_corpus(db, figures, candidates, images=_image_folders(context), progress=context.progress)
        out = context.path(self.export_name)
        fresh = out.with_name(f".{out.name}.new")
        if self.kind == "demonstrations":
            have = export_demonstrations(db, fresh).records
        else:
            have = export_preferences(db, fresh, answers="compare").records
        _replace_if_changed(fresh, out)
        counts = annotation_counts(db)
        required = getattr(context.config("annotate", AnnotateSettings), self.required_setting)
        outcome = Outcome(counts={"items": loaded.total_items, "answers": counts.answers,
                                  "annotators": counts.annotators, self.kind: have})
        if have < required and not context.no_wait:
            outcome.status = "waiting"
            outcome.notes = _gate_instructions(context, context.path(self.candidates_name),
                                               f"{have} of {required} {self.kind} so far")
        return outcome


class AnnotateDemosStage(_AnnotationStage):
    """Clinicians choose demonstrations among draft conversations of the sample (BioMed-VITAL's stage 1)."""

    name = "annotate_demos"
    needs = ("draft",)
    kind = "demonstrations"
    candidates_name = "draft-candidates.jsonl"
    export_name = "clinician-demos.jsonl"
    required_setting = "require_demonstrations"

    def configured(self, round_: Round) -> bool:
        return DraftStage().configured(round_)

    def off_reason(self, round_: Round) -> str:
        return DraftStage().off_reason(round_)


class AnnotateStage(_AnnotationStage):
    """Clinicians compare candidates of the sample; their preferences join the judge's for the selector."""

    name = "annotate"
    needs = ("generate",)
    kind = "preferences"
    candidates_name = "candidates.jsonl"
    export_name = "preferences.jsonl"
    required_setting = "require_preferences"


class TuneStage(Stage):
    """Instruction-tune the base on the selected data; without a base (a CPU and no model) it is off."""

    name = "tune"
    needs = ("select",)

    def configured(self, round_: Round) -> bool:
        return round_.enabled("tune") and round_["tune"].get(TuneInputs).base is not None

    def off_reason(self, round_: Round) -> str:
        if round_.enabled("tune"):
            return "no base model configured ([tune] base = a local llava-hf checkpoint); nothing to tune"
        return super().off_reason(round_)

    def inputs(self, context: Context) -> list[Path]:
        return [context.path("selected.json"), context.config("tune", TuneInputs).base]

    def outputs(self, context: Context) -> list[Path]:
        return [context.path("tuned")]

    def run(self, context: Context) -> Outcome:
        import vital

        base = context.config("tune", TuneInputs).base
        result = vital.tune(context.path("selected.json"), base, context.path("tuned"),
                            context.config("tune", vital.TuneConfig), progress=context.progress)
        counts = {"method": result.method, "steps": result.steps, "examples": result.examples,
                  "truncated": result.truncated, "tokens": result.tokens, "final_loss": result.final_loss,
                  "resumed_from": result.resumed_from}
        return Outcome(counts=counts, failed=result.failed, failures=result.failures)


class EvalStage(Stage):
    """Answer the benchmark with the tuned model and with its base, score both, and compare them, paired.

    Without tuning, the model is ``[eval] model`` (a checkpoint folder, or a server's model with
    ``backend = "openai"``).  Writes ``eval/answers-NAME.jsonl``, ``eval/vqa-NAME.json`` and, with two
    models, ``eval/compare.json`` (the tuned model against the base: differences, intervals, p-values).
    """

    name = "eval"
    needs = ("tune",)
    optional = ("tune",)
    appends = True

    def _models(self, context: Context) -> dict[str, Any]:
        """Name -> the engine config that answers as it (its ``model`` is a folder for transformers)."""
        from dataclasses import replace

        import vital

        engine = context.config("eval", vital.EngineConfig)
        if context.round.enabled("tune") and TuneStage().configured(context.round):
            base = context.config("tune", TuneInputs).base
            tuned = context.path("tuned")
            return {"base": replace(engine, model=str(base)), "tuned": replace(engine, model=str(tuned))}
        return {"model": engine}

    def inputs(self, context: Context) -> list[Path]:
        import vital

        answer = context.config("eval", vital.AnswerConfig)
        questions = [answer.questions] if answer.questions else [answer.data] if answer.data else []
        folders = [Path(e.model) for e in self._models(context).values() if Path(e.model).exists()]
        return [*questions, *folders]

    def outputs(self, context: Context) -> list[Path]:
        names = list(self._models(context))
        files = [context.path(f"eval/{kind}-{name}.{ext}") for name in names
                 for kind, ext in (("answers", "jsonl"), ("vqa", "json"))]
        return files + ([context.path("eval/compare.json")] if len(names) == 2 else [])

    def run(self, context: Context) -> Outcome:
        from dataclasses import replace

        import vital
        from vital.evaluate.answer import answer_questions
        from vital.jsonl import write_json_atomic

        answer = context.config("eval", vital.AnswerConfig)
        vqa = context.config("eval", vital.VqaConfig)
        questions = answer.load_questions()
        outcome = Outcome()
        answers = {}
        for name, engine in self._models(context).items():
            out = context.path(f"eval/answers-{name}.jsonl")
            result = answer_questions(questions, out, answer, engine, progress=context.progress)
            outcome.failed += result.failed
            outcome.failures = result.failures or outcome.failures
            answers[name] = out
            # a question that could not be answered (its failure is listed) counts as wrong
            scored = vital.eval_vqa(questions, out, replace(vqa, allow_missing=result.failed > 0))
            write_json_atomic(context.path(f"eval/vqa-{name}.json"), scored.to_json())
            outcome.counts[name] = {key: scored.metrics.get(key) for key in ("closed_accuracy", "recall")}
        if len(answers) == 2:
            compared = vital.eval_compare(questions, answers["base"], answers["tuned"],
                                          vital.CompareConfig(compat=vqa.compat, lang=vqa.lang,
                                                              bootstrap=max(vqa.bootstrap, 1), seed=vqa.seed))
            write_json_atomic(context.path("eval/compare.json"), compared.to_json())
        return outcome


STAGES: list[Stage] = [FiguresStage(), SampleStage(), DraftStage(), AnnotateDemosStage(), GenerateStage(),
                       JudgeStage(), AnnotateStage(), SelectorStage(), SelectStage(), TuneStage(), EvalStage()]
