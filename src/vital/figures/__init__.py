"""Figures: importing corpora into figure records, and reading them back with images resolved.

>>> summary = import_figures("fig_captions.json", "figures.jsonl", images="images/")
>>> for figure in read_figures("figures.jsonl"): ...
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from vital.errors import InputError
from vital.figures.images import ImageError, load_image, verify_image
from vital.figures.importers import FORMATS, detect_format, iter_source
from vital.jsonl import atomic_writer, dumps, failures_path, iter_json_lines, read_records, validation_to_input_error
from vital.records import Candidate, Figure

__all__ = [
    "FORMATS",
    "ImageError",
    "ImportSummary",
    "detect_format",
    "import_figures",
    "iter_candidates",
    "load_image",
    "portable_path",
    "read_figures",
    "resolve_image",
]


def resolve_image(image: str | None, base: str | Path) -> Path | None:
    """An image path from a record, made absolute against ``base`` (the folder of the file naming it)."""
    if not image:
        return None
    path = Path(image).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()


def read_figures(path: str | Path) -> Iterator[Figure]:
    """Stream the figures of a JSONL file with ``image`` made absolute."""
    path = Path(path)
    base = path.resolve().parent
    for figure in read_records(path, Figure):
        resolved = resolve_image(figure.image, base)
        figure.image = str(resolved) if resolved else None
        yield figure


def iter_candidates(
    path: str | Path, figures: Mapping[str, Figure] | None = None, *, unique_ids: bool = True
) -> Iterator[tuple[int, Candidate]]:
    """Stream ``(line, Candidate)`` with ``image`` made absolute (else, with ``figures``, the figure's image).

    With ``figures``, a candidate naming an unknown figure is an :class:`InputError`
    (file, line, field); with ``unique_ids``, so is an id seen before.
    """
    path = Path(path)
    base = path.resolve().parent
    seen: set[str] = set()
    for line, obj in iter_json_lines(path):
        try:
            candidate = Candidate.model_validate(obj)
        except ValidationError as exc:
            raise validation_to_input_error(exc, path, line) from None
        if unique_ids:
            if candidate.id in seen:
                raise InputError(f"candidate id {candidate.id!r} appears twice", path=path, line=line, field="id")
            seen.add(candidate.id)
        figure = None
        if figures is not None:
            figure = figures.get(candidate.figure_id)
            if figure is None:
                problem = f"figure {candidate.figure_id!r} is not in the figures file"
                raise InputError(problem, path=path, line=line, field="figure_id")
        image = resolve_image(candidate.image, base)
        candidate.image = str(image) if image else (figure.image if figure else None)
        yield line, candidate


@dataclass
class ImportSummary:
    output: Path
    figures: int = 0
    per_domain: Counter = field(default_factory=Counter)
    images_found: int = 0
    images_missing: int = 0
    images_unreadable: int = 0
    merged_duplicates: int = 0
    with_conversations: int = 0
    unknown_domains: Counter = field(default_factory=Counter)
    failures: Path | None = None
    seconds: float = 0.0


def portable_path(image: str | Path, out_dir: Path) -> str:
    """Relative to the output's folder when the image lies below it, else absolute."""
    image = Path(image)
    return image.relative_to(out_dir).as_posix() if image.is_relative_to(out_dir) else str(image)


def import_figures(
    src: str | Path,
    out: str | Path,
    *,
    fmt: str = "auto",
    images: str | Path | None = None,
    require_images: bool = False,
    check_images: bool = True,
) -> ImportSummary:
    """Import a corpus into a figure JSONL file.

    Two streaming passes: the first validates every record (so bad input stops
    the import before anything is written) and collects the domains of ids that
    occur more than once; the second writes each figure once, with all its
    domains, after checking its image.  Output and failures are written
    atomically; a failed import leaves an earlier output untouched.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    image_root = Path(images).resolve() if images else src.resolve().parent
    out_dir = out.resolve().parent

    domains_by_id: dict[str, list[str]] = {}
    for _, figure in iter_source(src, fmt):
        known = domains_by_id.get(figure.id)
        if known is None:
            domains_by_id[figure.id] = list(figure.domains)
        else:
            known.extend(d for d in figure.domains if d not in known)
    if not domains_by_id:
        raise InputError("no records found", path=src)

    summary = ImportSummary(output=out)
    failure_file = failures_path(out)
    failure_count = 0
    written: set[str] = set()
    with atomic_writer(out) as handle, atomic_writer(failure_file) as failure_handle:

        def fail(figure_id: str, line: int, reason: str, image: Path | None) -> None:
            nonlocal failure_count
            failure_count += 1
            record = {"id": figure_id, "stage": "figures import", "reason": reason, "source": str(src),
                      "line": line, "time": time.time()}
            if image is not None:
                record["image"] = str(image)
            failure_handle.write(dumps(record) + "\n")

        for line, figure in iter_source(src, fmt):
            if figure.id in written:
                summary.merged_duplicates += 1
                continue
            written.add(figure.id)
            figure.domains = domains_by_id[figure.id]
            image = resolve_image(figure.image, image_root)
            problem = "record names no image" if image is None else None
            if image is not None:
                figure.image = portable_path(image, out_dir)
                if check_images:
                    try:
                        verify_image(image)
                    except ImageError as exc:
                        problem = str(exc)
            if problem is None:
                summary.images_found += 1
            else:
                if require_images:
                    raise InputError(f"{problem}: {image}", path=src, line=line, field="image")
                if problem == "image file not found" or image is None:
                    summary.images_missing += 1
                else:
                    summary.images_unreadable += 1
                fail(figure.id, line, problem, image)
            summary.figures += 1
            summary.per_domain.update(figure.domains or ["(none)"])
            summary.unknown_domains.update(figure.meta.get("unknown_domains", []))
            summary.with_conversations += figure.conversations is not None
            handle.write(dumps(figure) + "\n")

    if failure_count:
        summary.failures = failure_file
    else:
        os.remove(failure_file)  # none this time: an empty or stale list would mislead
    summary.seconds = time.perf_counter() - started
    return summary
