"""Selection: keep the best-scored candidates and export them as LLaVA instruction data.

>>> result = select_candidates(candidates, scores, SelectionPolicy(top_fraction=0.4, per_figure=2))
>>> export_llava(result.kept, "selected.json")
>>> write_report(result, "selected.json")

Policies are applied to candidates in order of decreasing score: a candidate
is kept unless it is below ``min_score``, its figure already has
``per_figure`` kept candidates, its domain's quota is full, or it nearly
repeats a kept conversation about the same figure; the walk stops when the
budget (``top_k``, or ``top_fraction`` of the scored candidates) is reached.
With ``balance_domains`` every domain first gets an equal share of the
budget; shares a domain cannot fill go to the best remaining candidates of
any domain.

The LLaVA format: a JSON list of ``{"id", "image", "conversations"}`` whose
conversations alternate ``human`` / ``gpt``, start with ``human``, and carry
the ``<image>`` token exactly once, at the start of the first human turn.
The same module imports such files (LLaVA-Med, BioMed-VITAL) as candidates,
so existing datasets can be re-scored and re-selected, and merges them into
an export without duplicates.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.embeddings import content_key
from vital.errors import InputError
from vital.figures.images import ImageError, is_dicom, load_image
from vital.figures.importers import figure_from_llava_med, iter_json_objects
from vital.jsonl import (
    FailureLog,
    atomic_writer,
    failures_path,
    sibling_path,
    validation_to_input_error,
    write_json_atomic,
    write_jsonl_atomic,
)
from vital.records import Candidate, Figure, Turn, portable_path, resolve_image

IMAGE_TOKEN = "<image>"
UNEXPORTABLE = "not exportable: "
_WORDS = re.compile(r"[a-z0-9]+")


# -- the LLaVA format -------------------------------------------------------------------------------------
def llava_conversations(turns: Sequence[Turn]) -> list[dict[str, str]]:
    """Turns in LLaVA's shape, ``<image>`` moved to the start of the first human turn (exactly once).

    Raises ``ValueError`` when the turns do not alternate human / gpt starting with human.
    """
    if not turns:
        raise ValueError("conversation has no turns")
    out = []
    for position, turn in enumerate(turns):
        expected = "human" if position % 2 == 0 else "gpt"
        if turn.speaker != expected:
            raise ValueError(f"turn {position + 1} is from {turn.speaker!r}, expected {expected!r}")
        text = turn.value.replace(IMAGE_TOKEN, "").strip()
        if not text:
            raise ValueError(f"turn {position + 1} is empty apart from {IMAGE_TOKEN}")
        out.append({"from": turn.speaker, "value": text})
    if len(out) % 2:
        raise ValueError("the last question has no answer")
    out[0]["value"] = f"{IMAGE_TOKEN}\n{out[0]['value']}"
    return out


def conversation_fingerprint(turns: Sequence[Turn] | Sequence[dict[str, str]]) -> str:
    """Equal for conversations that differ only in case, spacing, punctuation or ``<image>``."""
    words = []
    for turn in turns:
        speaker = turn.speaker if isinstance(turn, Turn) else turn["from"]
        value = turn.value if isinstance(turn, Turn) else turn["value"]
        words.append(speaker + ":" + " ".join(_WORDS.findall(value.replace(IMAGE_TOKEN, "").lower())))
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()[:24]


def _shingles(text: str, size: int = 3) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.replace(IMAGE_TOKEN, "").lower())
    if len(words) < size:
        return {tuple(words)}
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


# -- selection --------------------------------------------------------------------------------------------
@dataclass
class SelectionPolicy:
    top_fraction: float | None = None
    """Keep this share of the scored candidates (the reference keeps 0.1, 0.4, 0.8 or 0.9)."""
    top_k: int | None = None
    per_figure: int | None = None
    min_score: float | None = None
    domain_quotas: dict[str, float] = field(default_factory=dict)
    """Most candidates kept per domain: a count (>= 1) or a share of the budget (< 1)."""
    balance_domains: bool = False
    near_duplicate: float | None = 0.6
    """Drop a candidate whose word-trigram Jaccard overlap with a kept one of its figure reaches this."""
    require_image: bool = True
    """LLaVA training needs the image: a candidate whose image file is missing is not selectable."""

    def validate(self) -> None:
        if self.top_fraction is not None and self.top_k is not None:
            raise InputError("give --top-fraction or --top-k, not both", field="top_fraction")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise InputError("must be in (0, 1]", field="top_fraction")
        if self.top_k is not None and self.top_k < 0:
            raise InputError("must not be negative", field="top_k")
        if self.per_figure is not None and self.per_figure < 1:
            raise InputError("must be at least 1", field="per_figure")
        if self.near_duplicate is not None and not 0 < self.near_duplicate <= 1:
            raise InputError("must be in (0, 1]", field="near_duplicate")
        for domain, quota in self.domain_quotas.items():
            if quota < 0:
                raise InputError(f"quota of {domain!r} must not be negative", field="domain_quota")


@dataclass
class Decision:
    candidate: Candidate
    score: float | None
    domain: str
    kept: bool
    reason: str = ""
    record: dict[str, Any] | None = None
    """The LLaVA record, or ``None`` when the candidate cannot be exported (``reason`` says why)."""


@dataclass
class SelectionResult:
    decisions: list[Decision]
    policy: SelectionPolicy
    budget: int
    merged: list[dict[str, Any]] = field(default_factory=list)
    merge_duplicates: int = 0

    @property
    def unexportable(self) -> list[Decision]:
        return [d for d in self.decisions if d.record is None and d.reason.startswith(UNEXPORTABLE)]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.kept]

    @property
    def cut(self) -> float | None:
        """The lowest kept score."""
        scores = [d.score for d in self.kept if d.score is not None]
        return min(scores) if scores else None


def candidate_domain(candidate: Candidate, figures: Mapping[str, Figure] | None) -> str:
    figure = figures.get(candidate.figure_id) if figures else None
    domains = figure.domains if figure is not None else (getattr(candidate, "domains", None) or [])
    return domains[0] if domains else "other"


def _quota(value: float, budget: int) -> int:
    return int(value) if value >= 1 else math.floor(value * budget)


def select_candidates(
    candidates: Iterable[Candidate],
    scores: Mapping[str, float],
    policy: SelectionPolicy,
    figures: Mapping[str, Figure] | None = None,
) -> SelectionResult:
    """Decide, for every candidate, whether it is kept and why not.

    Candidates that cannot become LLaVA records (a conversation LLaVA cannot
    use, or, with ``require_image``, a missing image file) are set aside
    before the budget is spent, so they never take a kept candidate's place.
    """
    policy.validate()
    decisions = []
    for candidate in candidates:
        score = scores.get(candidate.id)
        decision = Decision(candidate, score, candidate_domain(candidate, figures), kept=False)
        try:
            if policy.require_image and not (candidate.image and Path(candidate.image).is_file()):
                raise ValueError("image file not found" if candidate.image else "candidate has no image")
            decision.record = to_llava(candidate)
        except ValueError as exc:
            decision.reason = f"{UNEXPORTABLE}{exc}"
        if not decision.reason and (score is None or math.isnan(score)):
            decision.reason = "no score"
        elif not decision.reason and policy.min_score is not None and score < policy.min_score:
            decision.reason = "below the minimum score"
        decisions.append(decision)
    eligible = sorted(
        (d for d in decisions if not d.reason), key=lambda d: (-(d.score or 0.0), d.candidate.id)
    )
    scored = sum(1 for d in decisions if d.score is not None and not math.isnan(d.score))
    if policy.top_k is not None:
        budget = min(policy.top_k, len(eligible))
    elif policy.top_fraction is not None:
        budget = min(round(policy.top_fraction * scored), len(eligible))
    else:
        budget = len(eligible)
    explicit = {domain: _quota(value, budget) for domain, value in policy.domain_quotas.items()}
    quotas = dict(explicit)
    if policy.balance_domains:
        domains = sorted({d.domain for d in eligible})
        share = math.ceil(budget / max(len(domains), 1))
        quotas = {domain: min(explicit.get(domain, share), share) for domain in domains}
    per_figure: Counter = Counter()
    per_domain: Counter = Counter()
    kept_shingles: dict[str, list[set]] = defaultdict(list)
    kept = 0

    def walk(limits: Mapping[str, int]) -> None:
        nonlocal kept
        for decision in eligible:
            if kept >= budget:
                return
            if decision.kept or decision.reason == "near-duplicate":
                continue
            if (
                policy.per_figure is not None
                and per_figure[decision.candidate.figure_id] >= policy.per_figure
            ):
                decision.reason = "per-figure cap"
                continue
            quota = limits.get(decision.domain)
            if quota is not None and per_domain[decision.domain] >= quota:
                decision.reason = "domain quota"
                continue
            if policy.near_duplicate is not None:
                shingles = _shingles(" ".join(t.value for t in decision.candidate.conversations))
                twins = kept_shingles[decision.candidate.figure_id]
                if any(_jaccard(shingles, other) >= policy.near_duplicate for other in twins):
                    decision.reason = "near-duplicate"
                    continue
                twins.append(shingles)
            decision.kept, decision.reason = True, ""
            per_figure[decision.candidate.figure_id] += 1
            per_domain[decision.domain] += 1
            kept += 1

    walk(quotas)
    if policy.balance_domains:
        walk(explicit)  # shares that a small domain could not fill go to the best of the rest
    for decision in eligible:
        if not decision.kept and not decision.reason:
            decision.reason = "below the cut"
    return SelectionResult(decisions, policy, budget)


# -- export -----------------------------------------------------------------------------------------------
def to_llava(candidate: Candidate) -> dict[str, Any]:
    """One LLaVA record (image path as in the candidate); raises ``ValueError`` when it cannot be one."""
    record: dict[str, Any] = {"id": candidate.id}
    if candidate.image:
        record["image"] = candidate.image
    record["conversations"] = llava_conversations(candidate.conversations)
    return record


def _export_image(image: str, out: Path, image_root: Path | None, converted: dict[str, str]) -> str:
    """The path LLaVA reads: DICOM rendered to PNG beside the output (LLaVA opens images with PIL),
    relative to ``image_root`` when given, else to the output's folder when below it, else absolute."""
    path = Path(image)
    if is_dicom(path):
        if image not in converted:
            folder = out.with_name(f"{out.name.rsplit('.', 1)[0]}.images")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{content_key(image)[:16]}-{path.stem}.png"
            if not target.exists():
                load_image(path).save(target)
            converted[image] = str(target)
        path = Path(converted[image])
    base = (image_root or out.parent).resolve()
    return portable_path(path.resolve(), base)


def export_llava(
    result: SelectionResult,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    merge: Sequence[str | Path] = (),
    merge_images: str | Path | None = None,
) -> SelectionResult:
    """Write the kept candidates, then the merged datasets without duplicates, as one LLaVA JSON list.

    The file is written atomically.  Candidates that could not become LLaVA
    records go to ``<out>.failures.jsonl`` with the reason.  Image paths are
    written relative to ``image_root`` (LLaVA's ``--image_folder``) when
    given; DICOM images are rendered to PNG in ``<out>.images/``.  A merged
    dataset's image names are relative to its own image folder: with
    ``merge_images`` (that folder) they are rewritten like the kept
    candidates'; without, they are kept as written.
    """
    out = Path(out)
    root = Path(image_root) if image_root else None
    records, converted = [], {}
    for decision in result.kept:
        record = dict(decision.record or {})
        if record.get("image"):
            try:
                record["image"] = _export_image(record["image"], out, root, converted)
            except ImageError as exc:
                decision.kept, decision.record = False, None
                decision.reason = f"{UNEXPORTABLE}image cannot be read ({exc})"
                continue
        records.append(record)
    seen_ids = {record["id"] for record in records}
    seen_content = {_content_key(record) for record in records}
    merged, duplicates = [], 0
    for source in merge:
        for record in read_llava(source):
            key = _content_key(record)
            if key in seen_content:
                duplicates += 1
                continue
            seen_content.add(key)
            if merge_images and record.get("image"):
                source_image = resolve_image(record["image"], merge_images)
                record["image"] = _export_image(str(source_image), out, root, converted)
            if record["id"] in seen_ids:
                record["id"] = f"{Path(source).stem}:{record['id']}"
            seen_ids.add(record["id"])
            merged.append(record)
    failures_path(out).unlink(missing_ok=True)  # the export is rewritten whole, and so are its failures
    if result.unexportable:
        with FailureLog(out, "select") as log:
            for decision in result.unexportable:
                reason = decision.reason[len(UNEXPORTABLE) :]
                log.record(decision.candidate.id, reason, figure_id=decision.candidate.figure_id)
    write_json_atomic(out, records + merged, indent=1)
    result.merged, result.merge_duplicates = merged, duplicates
    return result


def _content_key(record: Mapping[str, Any]) -> tuple[str, str]:
    image = Path(str(record.get("image") or "")).name
    return image, conversation_fingerprint(record["conversations"])


def _llava_records(path: Path) -> Iterator[tuple[int, dict[str, Any], list[Turn]]]:
    """``(line, record, turns)`` for each record of a LLaVA-format JSON list or JSONL file."""
    if not path.is_file():
        raise InputError("file not found", path=path)
    for line, _, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line)
        conversations = obj.get("conversations")
        if not isinstance(conversations, list) or not conversations:
            raise InputError(
                "expected a non-empty list of turns", path=path, line=line, field="conversations"
            )
        turns = []
        for position, turn in enumerate(conversations):
            try:
                turns.append(Turn.model_validate(turn))
            except ValidationError as exc:
                error = validation_to_input_error(exc, path, line)
                error.field = f"conversations.{position}.{error.field}"
                raise InputError(error.problem, path=path, line=line, field=error.field) from None
        if obj.get("id") is None:
            raise InputError("required field is missing", path=path, line=line, field="id")
        yield line, obj, turns


def read_llava(path: str | Path) -> Iterator[dict[str, Any]]:
    """LLaVA records, normalised (``<image>`` once, in the first human turn); bad records raise InputError."""
    path = Path(path)
    for line, obj, turns in _llava_records(path):
        try:
            conversations = llava_conversations(turns)
        except ValueError as exc:
            raise InputError(str(exc), path=path, line=line, field="conversations") from None
        record = {"id": str(obj["id"])}
        image = obj.get("image") or obj.get("imgs")
        if image:
            record["image"] = str(image)
        record["conversations"] = conversations
        yield record


# -- import -----------------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    candidates: int = 0
    figures: int = 0
    images_found: int = 0
    images_missing: int = 0
    renamed_ids: int = 0


def import_llava(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    images: str | Path | None = None,
    figures_out: str | Path | None = None,
) -> ImportResult:
    """LLaVA-format instruction files (LLaVA-Med, BioMed-VITAL) as candidate records.

    ``figure_id`` is the record's ``pair_id``, else its image's file name,
    else its id.  Image paths are resolved against ``images`` (default: the
    source file's folder) and written relative to the output when below its
    folder, else absolute.  Records that carry a
    caption (``fig_caption``, as BioMed-VITAL's do) also become figures in
    ``figures_out``, so the selector sees their captions and domains.
    Both files are written atomically once every record has been read.
    """
    result = ImportResult()
    candidates: list[dict[str, Any]] = []
    figures: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for source in sources:
        source = Path(source)
        base = Path(images) if images else source.resolve().parent
        for line, obj, turns in _llava_records(source):
            image_name = obj.get("image") or obj.get("imgs")
            if isinstance(image_name, list):
                image_name = image_name[0] if image_name else None
            image = (base / str(image_name)).resolve() if image_name else None
            written_image = portable_path(image, Path(out).resolve().parent) if image else None
            figure_id = str(obj.get("pair_id") or (Path(str(image_name)).name if image_name else obj["id"]))
            candidate_id = str(obj["id"])
            if candidate_id in seen:
                candidate_id = f"{source.stem}:{line}:{candidate_id}"
                result.renamed_ids += 1
            seen.add(candidate_id)
            record = {
                "id": candidate_id,
                "figure_id": figure_id,
                "image": written_image,
                "conversations": [t.model_dump(by_alias=True) for t in turns],
                "generator": {"backend": "import", "source": str(source), "line": line},
            }
            if obj.get("fig_caption") and figures_out is not None and figure_id not in figures:
                figure = figure_from_llava_med(
                    {**obj, "pair_id": figure_id}, None, source, line, keep_conversations=False
                )
                figure.image = portable_path(image, Path(figures_out).resolve().parent) if image else None
                figures[figure_id] = figure.to_json_dict()
                record["domains"] = figure.domains
            elif figure_id in figures:
                record["domains"] = figures[figure_id].get("domains", [])
            try:
                Candidate.model_validate(record)
            except ValidationError as exc:
                raise validation_to_input_error(exc, source, line) from None
            if image is not None and image.is_file():
                result.images_found += 1
            else:
                result.images_missing += 1
            candidates.append({k: v for k, v in record.items() if v is not None})
    result.candidates = write_jsonl_atomic(out, candidates)
    if figures_out is not None and figures:
        result.figures = write_jsonl_atomic(figures_out, figures.values())
    return result


# -- report -----------------------------------------------------------------------------------------------
def plot_score_histogram(result: SelectionResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [d.score for d in result.decisions if d.kept and d.score is not None]
    dropped = [d.score for d in result.decisions if not d.kept and d.score is not None]
    figure, axis = plt.subplots(figsize=(6, 3.4))
    values = kept + dropped
    bins = 40 if len(set(values)) > 12 else max(len(set(values)), 1) * 2
    span = (min(values), max(values)) if values else (0, 1)
    axis.hist(
        [kept, dropped],
        bins=bins,
        range=span,
        stacked=True,
        label=["kept", "dropped"],
        color=["tab:green", "tab:grey"],
    )
    if result.cut is not None:
        axis.axvline(result.cut, color="tab:red", linestyle="--", label=f"cut ({result.cut:.3g})")
    axis.set(xlabel="score", ylabel="candidates", title="scores and the selection cut")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _example(decision: Decision, limit: int = 220) -> str:
    turns = decision.candidate.conversations
    question = turns[0].value.replace(IMAGE_TOKEN, "").strip().replace("\n", " ")
    answer = turns[1].value.strip().replace("\n", " ") if len(turns) > 1 else ""
    text = f"**Q:** {question} **A:** {answer}"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    score = f"{decision.score:.3f}" if decision.score is not None else "–"
    why = f" — dropped: {decision.reason}" if not decision.kept else ""
    return f"- `{decision.candidate.id}` ({decision.domain}, score {score}{why}): {text.replace('|', '/')}"


def write_report(result: SelectionResult, out: str | Path, *, examples: int = 3) -> Path:
    """``<out>.report.md`` with counts per domain, drop reasons, the score histogram and examples."""
    out = Path(out)
    report = sibling_path(out, "report.md")
    histogram = plot_score_histogram(result, sibling_path(out, "scores.png"))
    by_domain: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    for decision in result.decisions:
        by_domain[decision.domain]["kept" if decision.kept else "dropped"] += 1
        if not decision.kept:
            reasons[decision.reason] += 1
    policy = result.policy
    settings = [
        f"top fraction {policy.top_fraction}" if policy.top_fraction is not None else None,
        f"top k {policy.top_k}" if policy.top_k is not None else None,
        f"at most {policy.per_figure} per figure" if policy.per_figure else None,
        f"minimum score {policy.min_score}" if policy.min_score is not None else None,
        f"domain quotas {policy.domain_quotas}" if policy.domain_quotas else None,
        "balanced domains" if policy.balance_domains else None,
        f"near-duplicates at Jaccard >= {policy.near_duplicate}" if policy.near_duplicate else None,
    ]
    kept = sorted(result.kept, key=lambda d: -(d.score or 0))
    dropped = sorted(
        (d for d in result.decisions if not d.kept and d.score is not None), key=lambda d: -(d.score or 0)
    )
    cut = f"{result.cut:.4g}" if result.cut is not None else "none"
    lines = [
        f"# Selection report for {out.name}",
        "",
        f"Kept **{len(result.kept)}** of {len(result.decisions)} candidates "
        f"(budget {result.budget}; lowest kept score {cut}). Policy: "
        + (", ".join(s for s in settings if s) or "keep everything scored")
        + ".",
    ]
    if result.merged or result.merge_duplicates:
        lines.append(
            f"Merged {len(result.merged)} records from other datasets "
            f"({result.merge_duplicates} duplicates removed)."
        )
    lines += [
        "",
        f"![score histogram]({histogram.name})",
        "",
        "| domain | kept | dropped |",
        "| --- | ---: | ---: |",
        *(f"| {domain} | {c['kept']} | {c['dropped']} |" for domain, c in sorted(by_domain.items())),
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
