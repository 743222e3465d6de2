"""Figures: importing corpora into figure records, and reading them back with images resolved.

>>> summary = import_figures("fig_captions.json", "figures.jsonl", images="images/")

Reading figure records back is :func:`vital.records.read_figures`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vital.errors import InputError
from vital.figures.images import ImageError, load_image, verify_image
from vital.figures.importers import FORMATS, detect_format, iter_source
from vital.jsonl import atomic_writer, dumps, failures_path
from vital.records import portable_path, resolve_image

__all__ = [
    "FORMATS",
    "ImageError",
    "ImportSummary",
    "detect_format",
    "import_figures",
    "load_image",
]


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
