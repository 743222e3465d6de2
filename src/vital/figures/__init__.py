"""Figures: importing corpora (LLaVA-Med JSON, BioMed-VITAL demonstrations, CSV) into figure records.

>>> result = import_figures("fig_captions.json", "figures.jsonl", ImportConfig(images="images/"))
>>> result.figures, result.per_domain, result.failures

Reading figure records back is :func:`vital.records.read_figures`.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vital.config import StageConfig, setting
from vital.conversation import ConversationError, check_turns
from vital.errors import InputError
from vital.figures.images import ImageError, load_image, verify_image
from vital.figures.importers import FORMATS, detect_format, iter_source
from vital.jsonl import atomic_writer, dumps, failures_path, refuse_input_as_output, warn
from vital.progress import Progress, or_silent
from vital.records import portable_path, resolve_image

__all__ = [
    "FORMATS",
    "ImageError",
    "ImportConfig",
    "ImportResult",
    "detect_format",
    "import_figures",
    "load_image",
]


@dataclass
class ImportConfig(StageConfig):
    """How to read a corpus (``vital figures import``)."""

    format: str = setting("auto", "The corpus format (auto: from the suffix and the first record).",
                          choices=FORMATS)
    images: Path | None = setting(None, "Folder the image names are relative to (default: the source's folder).")
    require_images: bool = setting(False, "Stop at the first missing or unreadable image.")
    check_images: bool = setting(True, "Open every image to check that it can be read.", cli=False)


@dataclass
class ImportResult:
    """What an import wrote.  Figures whose image is missing or unreadable are imported and listed in
    ``failures`` (``failed`` of them): the stages that need images skip them."""

    out: Path
    figures: int = 0
    per_domain: Counter = field(default_factory=Counter)
    images_found: int = 0
    images_missing: int = 0
    images_unreadable: int = 0
    merged_duplicates: int = 0
    demonstrations: int = 0
    """Figures with a conversation that follows the turn rules (usable as demonstrations)."""
    invalid_demonstrations: list[str] = field(default_factory=list)
    """``"ID: problem"`` for each conversation that breaks the turn rules (left out of prompts)."""
    unknown_domains: Counter = field(default_factory=Counter)
    failures: Path | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.images_missing + self.images_unreadable


def import_figures(
    src: str | Path, out: str | Path, config: ImportConfig | None = None, *, progress: Progress | None = None
) -> ImportResult:
    """Import a corpus into a figure JSONL file.

    Two streaming passes: the first validates every record (so bad input stops
    the import before anything is written) and collects the domains of ids that
    occur more than once; the second writes each figure once, with all its
    domains, after checking its image.  Output and failures are written
    atomically; a failed import leaves an earlier output untouched.
    """
    config = config or ImportConfig()
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    refuse_input_as_output(out, src)
    image_root = config.images.resolve() if config.images else src.resolve().parent
    out_dir = out.resolve().parent

    domains_by_id: dict[str, list[str]] = {}
    with or_silent(progress).task(f"reading {src.name}") as task:
        for _, figure in iter_source(src, config.format):
            known = domains_by_id.get(figure.id)
            if known is None:
                domains_by_id[figure.id] = list(figure.domains)
            else:
                known.extend(d for d in figure.domains if d not in known)
            task.advance()
    if not domains_by_id:
        raise InputError("has no records", path=src)

    result = ImportResult(out=out)
    failure_file = failures_path(out)
    written: set[str] = set()
    with atomic_writer(out) as handle, atomic_writer(failure_file) as failure_handle, \
            or_silent(progress).task("checking images" if config.check_images else "writing",
                                     total=len(domains_by_id)) as task:

        def fail(figure_id: str, line: int, reason: str, image: Path | None) -> None:
            record = {"id": figure_id, "stage": "figures import", "reason": reason, "source": str(src),
                      "line": line, "time": time.time()}
            if image is not None:
                record["image"] = str(image)
            failure_handle.write(dumps(record) + "\n")

        for line, figure in iter_source(src, config.format):
            if figure.id in written:
                result.merged_duplicates += 1
                continue
            written.add(figure.id)
            figure.domains = domains_by_id[figure.id]
            image = resolve_image(figure.image, image_root)
            problem = "record names no image" if image is None else None
            if image is not None:
                figure.image = portable_path(image, out_dir)
                if config.check_images:
                    try:
                        verify_image(image)
                    except ImageError as exc:
                        problem = str(exc)
            if problem is None:
                result.images_found += 1
            else:
                if config.require_images:
                    raise InputError(f"{problem}: {image}", path=src, line=line, field="image")
                if problem == "image file not found" or image is None:
                    result.images_missing += 1
                else:
                    result.images_unreadable += 1
                fail(figure.id, line, problem, image)
            if figure.conversations is not None:
                try:
                    check_turns(figure.conversations)
                    result.demonstrations += 1
                except ConversationError as exc:
                    index = figure.meta.get("demo_index")
                    name = f"{index} ({figure.id})" if index is not None else figure.id
                    result.invalid_demonstrations.append(f"{name}: {exc.problem}")
                    warn(f"{src}:{line}: demonstration {name}: {exc.problem}; it is imported but will not be "
                         "shown to a model")
            result.figures += 1
            result.per_domain.update(figure.domains or ["(none)"])
            result.unknown_domains.update(figure.meta.get("unknown_domains", []))
            handle.write(dumps(figure) + "\n")
            task.advance()

    if result.failed:
        result.failures = failure_file
    else:
        os.remove(failure_file)  # none this time: an empty or stale list would mislead
    result.seconds = time.perf_counter() - started
    return result
