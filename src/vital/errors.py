"""The one error type for unusable input.

Every stage raises :class:`InputError` for input it cannot use; the CLI turns it
into a single line on stderr (``FILE:LINE: field 'x': problem``) and exit
status 2.  Stages check their inputs before they write (generate reads every
figure still to do first); whole-file outputs are written atomically, so they
are never left half-written; where a bad record can only be found late (the
annotation database commits its corpus in batches), what was finished before
it is kept and a rerun after the input is fixed goes on from there.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Unusable input: names the file, the line and the field when they are known."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.problem}"
