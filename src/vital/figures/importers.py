"""Readers for figure corpora: LLaVA-Med figure captions, BioMed-VITAL demonstrations, CSV, our own JSONL.

Every reader yields ``(line, Figure)`` with the line of the source file where
the record starts, so that a bad record is reported as ``FILE:LINE: field``.
JSON documents (a list, or a dict of domain -> list) are walked element by
element with ``raw_decode``: records are built one at a time instead of as one
huge object tree.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vital.errors import InputError
from vital.figures.domains import normalize_domains
from vital.jsonl import input_file, iter_json_objects, validation_to_input_error
from vital.records import Figure

FORMATS = ("auto", "llava-med", "biomed-vital", "csv", "vital")


def _string(obj: dict, key: str, path: Path, line: int, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError("required field is missing", path=path, line=line, field=key)
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"expected text, found {type(value).__name__}", path=path, line=line, field=key)
    if required and not value.strip():
        raise InputError("must not be empty", path=path, line=line, field=key)
    return value.strip()


def _mentions(value: Any, path: Path, line: int) -> list[str]:
    """``in_text_mention``: a list of ``{"tokens": ...}`` objects or of strings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError("expected a list", path=path, line=line, field="in_text_mention")
    mentions = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            item = item.get("tokens")
        if isinstance(item, list):
            item = " ".join(str(token) for token in item)
        if not isinstance(item, str):
            raise InputError(
                "expected a string or an object with 'tokens'", path=path, line=line, field=f"in_text_mention.{index}"
            )
        if item.strip():
            mentions.append(item.strip())
    return mentions


def _flag_domains(obj: dict, group: str | None, path: Path, line: int) -> list[str]:
    flags = obj.get("domain") or {}
    if not isinstance(flags, dict):
        raise InputError("expected an object of domain flags", path=path, line=line, field="domain")
    names = [name for name, on in flags.items() if on is True]
    if group is not None:
        names.insert(0, group)
    return names


def _make_figure(fields: dict, path: Path, line: int) -> Figure:
    try:
        return Figure.model_validate(fields)
    except ValidationError as exc:
        raise validation_to_input_error(exc, path, line) from None


def figure_from_llava_med(obj: dict, group: str | None, path: Path, line: int, *, keep_conversations: bool) -> Figure:
    """A LLaVA-Med (or BioMed-VITAL, with ``keep_conversations``) record as a :class:`Figure`.

    ``group`` is the domain key the record was listed under, if any.
    """
    figure_id = _string(obj, "pair_id", path, line) or _string(obj, "id", path, line)
    if figure_id is None:
        raise InputError("required field is missing", path=path, line=line, field="pair_id")
    caption = _string(obj, "fig_caption", path, line, required=True)
    image = _string(obj, "image", path, line) or _string(obj, "imgs", path, line) or f"{figure_id}.jpg"
    domains, unknown = normalize_domains(_flag_domains(obj, group, path, line))
    meta = {key: obj[key] for key in ("pmid", "fig_id", "graphic_ref") if obj.get(key) is not None}
    if unknown:
        meta["unknown_domains"] = unknown
    fields = {
        "id": figure_id,
        "image": image,
        "caption": caption,
        "mentions": _mentions(obj.get("in_text_mention"), path, line),
        "domains": domains,
        "label": _string(obj, "fig_label", path, line),
        "meta": meta,
    }
    if keep_conversations:
        if "conversations" not in obj:
            raise InputError("required field is missing", path=path, line=line, field="conversations")
        fields["conversations"] = obj["conversations"]
        if obj.get("id") is not None and obj.get("pair_id") is not None:
            meta["demo_index"] = obj["id"]
    return _make_figure(fields, path, line)


def _split_cell(value: str | None) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in re.split(r"[|;]", value) if part.strip()]


def _text_lines(path: Path) -> Iterator[str]:
    """The lines of a text file, each decoded as UTF-8; binary or other encodings stop at the line."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if b"\x00" in raw:
                raise InputError("binary data (a NUL byte): not a text file", path=path, line=number)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path,
                                 line=number) from None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """``(first line, row)`` for each record of a CSV file with a header; malformed CSV is an InputError."""
    reader = csv.DictReader(_text_lines(path), strict=True)
    start = 1
    try:
        header = reader.fieldnames
        if not header:
            raise InputError("file is empty", path=path)
        for column in ("id", "image", "caption"):
            if column not in header:
                raise InputError("required column is missing from the header", path=path, line=1, field=column)
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            problem = "the file ends inside a quoted field (a closing quote is missing)"
        elif "field larger than field limit" in str(exc):
            problem = f"a field is longer than the CSV limit of {csv.field_size_limit():,} characters"
        else:
            problem = f"not valid CSV ({exc})"
        raise InputError(problem, path=path, line=start) from None


def iter_csv(path: Path) -> Iterator[tuple[int, Figure]]:
    """``id,image,caption`` and optional ``mentions`` (``|``-separated) and ``domains``."""
    for line, row in _csv_rows(path):
        if None in row:
            raise InputError("more cells than header columns (quote captions that contain commas)",
                             path=path, line=line)
        for column in ("id", "caption"):
            if not (row.get(column) or "").strip():
                raise InputError("must not be empty", path=path, line=line, field=column)
        domain_values = [p.strip() for p in re.split(r"[|;,]", row.get("domains") or "") if p.strip()]
        domains, unknown = normalize_domains(domain_values)
        meta = {"unknown_domains": unknown} if unknown else {}
        yield line, _make_figure(
            {
                "id": (row["id"] or "").strip(),
                "image": (row.get("image") or "").strip() or None,
                "caption": (row["caption"] or "").strip(),
                "mentions": _split_cell(row.get("mentions")),
                "domains": domains,
                "label": (row.get("label") or "").strip() or None,
                "meta": meta,
            },
            path,
            line,
        )


def detect_format(path: Path) -> str:
    """Tell the format of ``path`` from its suffix and its first record."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    for line, _, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line)
        if "conversations" in obj and ("fig_caption" in obj or "imgs" in obj):
            return "biomed-vital"
        if "fig_caption" in obj or "pair_id" in obj:
            return "llava-med"
        if "caption" in obj and "id" in obj:
            return "vital"
        raise InputError(
            "cannot tell the format from this record (expected LLaVA-Med 'fig_caption', BioMed-VITAL "
            "'conversations', or 'id' + 'caption'); pass --format",
            path=path,
            line=line,
        )
    raise InputError("file is empty", path=path)


def iter_source(path: str | Path, fmt: str = "auto") -> Iterator[tuple[int, Figure]]:
    """Every figure in ``path`` as ``(line, Figure)``; image paths are as written in the source."""
    path = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})", field="format")
    input_file(path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path=path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "csv":
        yield from iter_csv(path)
        return
    for line, group, obj in iter_json_objects(path):
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line)
        if fmt == "vital":
            yield line, _make_figure(obj, path, line)
        else:
            yield line, figure_from_llava_med(obj, group, path, line, keep_conversations=fmt == "biomed-vital")
