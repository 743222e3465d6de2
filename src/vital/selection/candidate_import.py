"""``vital candidates import``: LLaVA-format instruction data (LLaVA-Med, BioMed-VITAL) as candidates and figures,
so that an existing dataset can be re-scored and re-selected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.conversation import read_llava
from vital.errors import InputError
from vital.figures.importers import figure_from_llava_med
from vital.jsonl import input_file, validation_to_input_error, write_jsonl_atomic
from vital.records import Candidate, portable_path


@dataclass
class ImportCandidatesResult:
    out: Path
    candidates: int = 0
    figures: int = 0
    """Figures written to ``figures_out`` (records that carry a caption); 0 when none is written."""
    figures_out: Path | None = None
    images_found: int = 0
    images_missing: int = 0
    renamed_ids: int = 0
    """Repeated ids made unique as ``SOURCE_STEM:LINE:ID``."""


def import_candidates(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    images: str | Path | None = None,
    figures_out: str | Path | None = None,
) -> ImportCandidatesResult:
    """Write the records of LLaVA-format files as candidate records (``generator.backend`` "import").

    ``figure_id`` is the record's ``pair_id``, else its image's file name,
    else its id.  Image paths are resolved against ``images`` (default: the
    source file's folder) and written relative to the output when below its
    folder, else absolute.  Records that carry a caption (``fig_caption``, as
    BioMed-VITAL's do) also become figures in ``figures_out``, so the selector
    sees their captions and domains.  Conversations are imported as written;
    one LLaVA cannot use is found, and listed, by ``vital select``.  Both files
    are written atomically once every record has been read; a source without
    records is an :class:`InputError`.
    """
    out = Path(out)
    result = ImportCandidatesResult(out)
    candidates: list[dict[str, Any]] = []
    figures: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for source in map(input_file, sources):
        base = Path(images) if images else source.resolve().parent
        before = len(candidates)
        for llava in read_llava(source, check=False):
            obj = llava.raw
            image = (base / llava.image).resolve() if llava.image else None
            figure_id = str(obj.get("pair_id") or (Path(llava.image).name if llava.image else llava.id))
            candidate_id = llava.id
            if candidate_id in seen:
                candidate_id = f"{source.stem}:{llava.line}:{candidate_id}"
                result.renamed_ids += 1
            seen.add(candidate_id)
            record: dict[str, Any] = {
                "id": candidate_id,
                "figure_id": figure_id,
                "image": portable_path(image, out.resolve().parent) if image else None,
                "conversations": [turn.model_dump(by_alias=True) for turn in llava.turns],
                "generator": {"backend": "import", "source": str(source), "line": llava.line},
            }
            if obj.get("fig_caption") and figures_out is not None and figure_id not in figures:
                figure = figure_from_llava_med({**obj, "pair_id": figure_id}, None, source, llava.line,
                                               keep_conversations=False)
                figure.image = portable_path(image, Path(figures_out).resolve().parent) if image else None
                figures[figure_id] = figure.to_json_dict()
                record["domains"] = figure.domains
            elif figure_id in figures:
                record["domains"] = figures[figure_id].get("domains", [])
            try:
                Candidate.model_validate(record)
            except ValidationError as exc:
                raise validation_to_input_error(exc, source, llava.line) from None
            if image is not None and image.is_file():
                result.images_found += 1
            else:
                result.images_missing += 1
            candidates.append({k: v for k, v in record.items() if v is not None})
        if len(candidates) == before:
            raise InputError("the file has no records", path=source)
    result.candidates = write_jsonl_atomic(out, candidates)
    if figures_out is not None and figures:
        result.figures_out = Path(figures_out)
        result.figures = write_jsonl_atomic(figures_out, figures.values())
    return result
