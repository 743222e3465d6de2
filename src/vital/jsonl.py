"""Streaming JSONL: read with clear errors, append with resume, write atomically.

Three rules keep long runs safe:

* records are appended and flushed one at a time; an output file is never
  re-read or rewritten per record;
* a run that resumes learns what is finished from one streaming pass over the
  output (:func:`finished_ids`);
* a process killed mid-write leaves at most one torn last line (no trailing
  newline).  Readers report and skip it; :class:`JsonlWriter` cuts it off
  before appending, so it is never merged with the next record.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import mmap
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from vital.errors import InputError

M = TypeVar("M", bound=BaseModel)
_WHITESPACE = re.compile(r"\s*")
log = logging.getLogger("vital")


def warn(message: str) -> None:
    """Report something the user should know about and carry on (the CLI prints it as ``warning: ...``)."""
    log.warning(message)


def _field_name(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(record)"


def validation_to_input_error(exc: ValidationError, path: str | Path, line: int | None) -> InputError:
    first = exc.errors()[0]
    problem = first["msg"]
    if first["type"] == "missing":
        problem = "required field is missing"
    return InputError(problem, path=path, line=line, field=_field_name(first))


def torn_tail_length(path: Path) -> int:
    """Bytes after the last newline: a line a killed writer did not finish."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb") as handle:
        block = 1 << 16
        offset = size
        while offset > 0:
            start = max(0, offset - block)
            handle.seek(start)
            chunk = handle.read(offset - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return size - (start + newline + 1)
            offset = start
    return size


def parse_json_line(raw: bytes, path: str | Path, line: int) -> dict[str, Any] | None:
    """One JSONL line as an object (``None`` for a blank line); anything else is an :class:`InputError`."""
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=path, line=line) from None
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=line)
    return obj


def input_file(path: str | Path) -> Path:
    """``path`` if it is a file to read; a directory or a missing file is an :class:`InputError`."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; expected a file", path=path)
    if not path.exists():
        raise InputError("file not found", path=path)
    return path


def utf8_text(path: Path) -> str:
    """The text of a file (a UTF-8 BOM removed); bytes that are not UTF-8 are an :class:`InputError` naming the line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path, line=line) from None


def iter_json_lines(path: str | Path, *, skip_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line; a malformed line is an :class:`InputError`.

    A malformed last line with no trailing newline is what a killed writer
    leaves.  Resuming an output (``skip_torn_tail=True``) reports and skips it;
    reading an input stops with an error that says so, because a record that is
    merely mistyped must never be dropped quietly.
    """
    path = input_file(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if skip_torn_tail and not raw.endswith(b"\n"):
                # a line without its newline is unfinished, even if it parses: the writer cuts it off
                if raw.strip():
                    warn(f"{path}:{line_number}: ignoring a torn last line (an interrupted write)")
                return
            try:
                obj = parse_json_line(raw, path, line_number)
            except InputError as exc:
                if raw.endswith(b"\n") or not exc.problem.startswith("not valid JSON"):
                    raise
                exc.problem += "; the last line is incomplete, as an interrupted run leaves it: rerun the stage "
                exc.problem += "that writes this file to finish it"
                raise InputError(exc.problem, path=path, line=line_number) from None
            if obj is not None:
                yield line_number, obj


class _JsonWalker:
    """Walks a JSON text's top-level list or dict of lists, decoding one element at a time."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.pos = 0
        self._line = 1
        self._counted = 0
        self._decoder = json.JSONDecoder()

    def line(self) -> int:
        self._line += self.text.count("\n", self._counted, self.pos)
        self._counted = self.pos
        return self._line

    def skip_ws(self) -> str:
        self.pos = _WHITESPACE.match(self.text, self.pos).end()  # type: ignore[union-attr]  # \s* always matches
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, problem: str) -> InputError:
        return InputError(problem, path=self.path, line=self.line())

    def decode(self) -> Any:
        try:
            value, self.pos = self._decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            return self._raise_json(exc)
        return value

    def _raise_json(self, exc: json.JSONDecodeError) -> Any:
        raise InputError(f"not valid JSON ({exc.msg}, column {exc.colno})", path=self.path, line=exc.lineno)

    def array(self, group: str | None) -> Iterator[tuple[int, str | None, Any]]:
        self.pos += 1  # past "["
        if self.skip_ws() == "]":
            self.pos += 1
            return
        while True:
            self.skip_ws()
            line = self.line()
            yield line, group, self.decode()
            char = self.skip_ws()
            self.pos += 1
            if char == "]":
                return
            if char != ",":
                raise self.fail("expected ',' or ']' between records")

    def groups(self) -> Iterator[tuple[int, str | None, Any]]:
        """A dict whose values are lists of records (LLaVA-Med's domain -> records)."""
        self.pos += 1  # past "{"
        if self.skip_ws() == "}":
            return
        while True:
            self.skip_ws()
            key = self.decode()
            if self.skip_ws() != ":":
                raise self.fail("expected ':' after a key")
            self.pos += 1
            if self.skip_ws() != "[":
                raise self.fail(f"expected a list of records under {key!r}")
            yield from self.array(str(key))
            char = self.skip_ws()
            self.pos += 1
            if char == "}":
                return
            if char != ",":
                raise self.fail("expected ',' or '}' between groups")


def _looks_like_groups(text: str, start: int) -> bool:
    """Is the object at ``start`` a dict of lists (rather than one record of a JSONL file)?"""
    match = re.compile(r'\{\s*"(?:[^"\\]|\\.)*"\s*:\s*\[').match(text, start)
    return match is not None


def iter_json_objects(path: Path) -> Iterator[tuple[int, str | None, Any]]:
    """``(line, group, object)`` for a JSON list, a JSON dict of lists, or JSONL."""
    path = input_file(path)
    if path.suffix.lower() == ".jsonl":
        for line, obj in iter_json_lines(path):
            yield line, None, obj
        return
    text = utf8_text(path)
    walker = _JsonWalker(text, path)
    first = walker.skip_ws()
    if not first:
        raise InputError("file is empty", path=path)
    if first == "[":
        yield from walker.array(None)
        if walker.skip_ws():
            raise walker.fail("unexpected text after the end of the list")
    elif first == "{" and _looks_like_groups(text, walker.pos):
        yield from walker.groups()
        if walker.skip_ws():
            raise walker.fail("unexpected text after the end of the document")
    else:
        for line, obj in iter_json_lines(path):
            yield line, None, obj


def read_records(path: str | Path, model: type[M]) -> Iterator[M]:
    """Stream ``model`` records from a JSONL file; a bad line is an :class:`InputError`."""
    for line_number, obj in iter_json_lines(path):
        try:
            yield model.model_validate(obj)
        except ValidationError as exc:
            raise validation_to_input_error(exc, path, line_number) from None


def _leading_values(path: Path, key: str) -> set[str] | None:
    """Values of ``key`` when every complete line starts with it, as :class:`JsonlWriter` writes records.

    One regular-expression pass over the memory-mapped file, without parsing
    JSON (100K candidate lines in well under a second).  ``None`` when any line
    does not start with a plain string or integer ``key``; the caller then parses.
    """
    if path.stat().st_size == 0:
        return set()
    field = re.escape(json.dumps(key).encode())
    value = rb'(?:"([^"\\\n]*)"|(-?\d+)[,}])'
    first_line = re.compile(rb"\{" + field + rb":" + value)
    # A literal prefix lets the regex engine jump from match to match instead of testing every byte.
    next_line = re.compile(rb"\n\{" + field + rb":" + value)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        end = data.rfind(b"\n") + 1
        if end == 0:
            return None
        lines = sum(data[i : i + (1 << 24)].count(b"\n") for i in range(0, end, 1 << 24))
        first = first_line.match(data, 0, end)
        if first is None:
            return None
        values = [first.group(1) or first.group(2)]
        values += [m.group(1) or m.group(2) for m in next_line.finditer(data, 0, end - 1)]
        if len(values) != lines:
            return None
        if end < len(data):
            warn(f"{path}: ignoring a torn last line (an interrupted write)")
        return {value.decode("utf-8") for value in values}


def finished_ids(path: str | Path, key: str | Callable[[dict[str, Any]], str] = "id") -> set[str]:
    """The ids already written to an output, in one streaming pass (empty if absent).

    ``key`` names the id field, or computes an id from a record.
    """
    path = Path(path)
    if not path.exists():
        return set()
    if isinstance(key, str):
        fast = _leading_values(path, key)
        if fast is not None:
            return fast
    get = (lambda obj: obj.get(key)) if isinstance(key, str) else key
    done: set[str] = set()
    for line, obj in iter_json_lines(path, skip_torn_tail=True):
        try:
            value = get(obj)
        except KeyError as exc:
            raise InputError(
                "this output holds records of another kind; write to a new file",
                path=path, line=line, field=str(exc.args[0]),
            ) from None
        if value is not None:
            done.add(str(value))
    return done


def refuse_input_as_output(out: str | Path, *inputs: str | Path | None) -> None:
    """Stop before appending to a file the same run reads: that would corrupt it."""
    target = Path(out).resolve()
    for source in inputs:
        if source is not None and Path(source).resolve() == target:
            raise InputError(f"is also an input of this run ({source}); choose another output file", field="--out")


def dumps(record: BaseModel | dict[str, Any]) -> str:
    if isinstance(record, BaseModel):
        obj = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        obj = record
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class JsonlWriter:
    """Append records to a JSONL file, one flushed line each, holding the file's lock.

    Opening takes an exclusive lock on the file before anything else, so a
    second run writing to it is refused (:class:`InputError`) before it
    changes anything; then a torn last line is cut off (the fragment is
    reported, never merged with the next record).  With ``remove_if_empty``
    the file is removed on closing if it is empty, still under the lock.  Use
    as a context manager.
    """

    def __init__(self, path: str | Path, *, remove_if_empty: bool = False) -> None:
        self.path = Path(path)
        self.count = 0
        self.remove_if_empty = remove_if_empty
        self._handle: IO[str] | None = None

    def _lock(self) -> IO[str]:
        """The file open for appending and locked; another run holding it is an :class:`InputError`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = self.path.open("a", encoding="utf-8")
            try:  # two runs appending to one file would duplicate records: the second one stops
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise InputError("another run is writing to this file; wait for it or choose another output",
                                 path=self.path) from None
            if _same_file(handle, self.path):
                return handle
            handle.close()  # the run that held it removed the file meanwhile: lock the new one

    def __enter__(self) -> JsonlWriter:
        handle = self._lock()
        torn = torn_tail_length(self.path)
        if torn:
            size = self.path.stat().st_size
            warn(f"{self.path}: removing a torn last line of {torn} bytes left by an interrupted run")
            with self.path.open("r+b") as tail:
                tail.truncate(size - torn)
        self._handle = handle
        return self

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        assert self._handle is not None, "JsonlWriter used outside a with block"
        self._handle.write(dumps(record) + "\n")
        self._handle.flush()
        self.count += 1

    def close(self) -> None:
        if self._handle is not None:
            if self.remove_if_empty and os.fstat(self._handle.fileno()).st_size == 0 \
                    and _same_file(self._handle, self.path):
                self.path.unlink()
            self._handle.close()
            self._handle = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same_file(handle: IO[Any], path: Path) -> bool:
    """Does ``path`` still name the file ``handle`` has open (it may have been removed or replaced)?"""
    try:
        named, held = os.stat(path), os.fstat(handle.fileno())
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def sibling_path(output: str | Path, tag: str) -> Path:
    """A file beside an output: ``x.jsonl`` + ``llm.sqlite`` -> ``x.llm.sqlite`` (``x.json`` likewise)."""
    output = Path(output)
    return output.with_name(f"{output.name.removesuffix('.jsonl').removesuffix('.json')}.{tag}")


def failures_path(output: str | Path) -> Path:
    """``out.jsonl`` -> ``out.failures.jsonl`` (``out.json`` -> ``out.failures.jsonl``)."""
    return sibling_path(output, "failures.jsonl")


class FailureLog(JsonlWriter):
    """``<output>.failures.jsonl``: every record the current run could not produce, with the reason.

    The file is started afresh by each run: a rerun retries every earlier
    failure (none of them is in the output), so the file always lists what the
    latest run could not produce, never items that have since succeeded.  It
    is emptied only once its lock is held, so a run refused because another
    one is writing leaves the other's list alone; and it is removed on closing
    when nothing failed.  Open it after the output's :class:`JsonlWriter`, so
    that a refused run is refused by the output it wanted and names it.
    """

    def __init__(self, output: str | Path, stage: str) -> None:
        super().__init__(failures_path(output), remove_if_empty=True)
        self.stage = stage

    def __enter__(self) -> FailureLog:
        self._handle = self._lock()
        self._handle.truncate(0)
        return self

    def record(self, item_id: str, reason: str, **details: Any) -> None:
        self.write({"id": item_id, "stage": self.stage, "reason": reason, "time": time.time(), **details})


@contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write a whole file through a temporary sibling and rename it into place.

    The temporary file is created with mode 0666 less the umask, as ``open()`` would create the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None``: strict JSON, which every parser reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    with atomic_writer(path) as handle:
        json.dump(json_safe(obj), handle, ensure_ascii=False, indent=indent, allow_nan=False)
        handle.write("\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write a complete JSONL file at once (for outputs that are not resumable)."""
    count = 0
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(dumps(record) + "\n")
            count += 1
    return count
