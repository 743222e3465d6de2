"""The LLaVA export: the kept candidates, then other LLaVA datasets without duplicates, as one JSON list.

LLaVA's format is a JSON list of ``{"id", "image", "conversations"}``; the
turn rules and the place of the ``<image>`` token are :mod:`vital.conversation`'s.
Image paths are written as LLaVA's ``--image_folder`` expects them, and
DICOM images are rendered to PNG beside the output, because LLaVA opens
images with PIL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vital.conversation import fingerprint, read_llava, to_llava
from vital.embeddings import content_key
from vital.errors import InputError
from vital.figures.images import ImageError, is_dicom, load_image
from vital.jsonl import FailureLog, failures_path, sibling_path, write_json_atomic
from vital.progress import Progress, or_silent
from vital.records import Candidate, portable_path, resolve_image

if TYPE_CHECKING:
    from vital.selection.policies import Selection


def llava_record(candidate: Candidate) -> dict[str, Any]:
    """One LLaVA record (image path as in the candidate); raises ``ConversationError`` when it cannot be one."""
    record: dict[str, Any] = {"id": candidate.id}
    if candidate.image:
        record["image"] = candidate.image
    record["conversations"] = to_llava(candidate.conversations)
    return record


def export_image(image: str, out: Path, image_root: Path | None, converted: dict[str, str]) -> str:
    """The path LLaVA reads: DICOM rendered to PNG in ``<out>.images/``, relative to ``image_root`` when
    given, else to the output's folder when below it, else absolute.  ``converted`` remembers renderings."""
    path = Path(image)
    if is_dicom(path):
        if image not in converted:
            folder = sibling_path(out, "images")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{content_key(image)[:16]}-{path.stem}.png"
            if not target.exists():
                load_image(path).save(target)
            converted[image] = str(target)
        path = Path(converted[image])
    base = (image_root or out.parent).resolve()
    return portable_path(path.resolve(), base)


def duplicate_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """Records with the same image file name and conversation (up to case, spacing, ``<image>``) are duplicates."""
    image = Path(str(record.get("image") or "")).name
    return image, fingerprint(record["conversations"])


@dataclass
class LlavaExport:
    out: Path
    records: int
    """Kept candidates written."""
    merged: int
    """Records added from the ``merge`` datasets."""
    merge_duplicates: int
    failed: int
    """Candidates that could not be exported (listed in ``failures``)."""
    failures: Path | None


def export_llava(
    selection: Selection,
    out: str | Path,
    *,
    image_root: str | Path | None = None,
    merge: Sequence[str | Path] = (),
    merge_images: str | Path | None = None,
    progress: Progress | None = None,
) -> LlavaExport:
    """Write the kept candidates, then the merged datasets without duplicates, as one LLaVA JSON list.

    The file is written atomically.  Candidates that could not become LLaVA
    records go to ``<out>.failures.jsonl`` with the reason; a kept candidate
    whose image cannot be read is one of them (its decision is changed to
    say so).  Image paths are written relative to ``image_root`` (LLaVA's
    ``--image_folder``) when given.  A merged dataset's image names are
    relative to its own image folder: with ``merge_images`` (that folder)
    they are rewritten like the kept candidates'; without, they are kept as
    written.  A merged record whose id is taken gets ``SOURCE_STEM:`` in front.
    """
    out = Path(out)
    root = Path(image_root) if image_root else None
    merging = [(source, list(read_llava(source))) for source in merge]  # read and checked before anything is written
    records: list[dict[str, Any]] = []
    converted: dict[str, str] = {}
    kept = selection.kept
    with or_silent(progress).task("exporting", total=len(kept)) as task:
        for decision in kept:
            task.advance()
            record = dict(decision.record or {})
            if record.get("image"):
                try:
                    record["image"] = export_image(record["image"], out, root, converted)
                except ImageError as exc:
                    decision.set_unexportable(f"image cannot be read ({exc})")
                    continue
            records.append(record)
    seen_ids = {record["id"] for record in records}
    seen_content = {duplicate_key(record) for record in records}
    merged: list[dict[str, Any]] = []
    duplicates = 0
    for source, llava_records in merging:
        for llava in llava_records:
            entry: dict[str, Any] = {"id": llava.id}
            if llava.image:
                entry["image"] = llava.image
            entry["conversations"] = to_llava(llava.turns)
            key = duplicate_key(entry)
            if key in seen_content:
                duplicates += 1
                continue
            seen_content.add(key)
            if merge_images and llava.image:
                try:
                    entry["image"] = export_image(str(resolve_image(llava.image, merge_images)), out, root,
                                                  converted)
                except ImageError as exc:
                    raise InputError(f"image cannot be read ({exc})", path=llava.path, line=llava.line,
                                     field="image") from None
            if entry["id"] in seen_ids:
                entry["id"] = f"{Path(source).stem}:{entry['id']}"
            seen_ids.add(entry["id"])
            merged.append(entry)
    failures_path(out).unlink(missing_ok=True)  # the export is rewritten whole, and so are its failures
    unexportable = selection.unexportable
    if unexportable:
        with FailureLog(out, "select") as log:
            for decision in unexportable:
                log.record(decision.candidate.id, decision.unexportable or "",
                           figure_id=decision.candidate.figure_id)
    write_json_atomic(out, records + merged, indent=1)
    return LlavaExport(out, len(records), len(merged), duplicates, len(unexportable),
                       failures_path(out) if unexportable else None)
