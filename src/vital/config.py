"""Stage configurations: one dataclass per stage, the single source of defaults, help and validation.

Each stage's settings are a dataclass of :func:`setting` fields::

    @dataclass
    class SelectConfig(StageConfig):
        top_fraction: float | None = setting(None, "Keep this share of the scored candidates.")
        source: str = setting("auto", "Which scores to use.", choices=("auto", "selector", "model"))

        def validate(self) -> None:
            if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
                raise InputError("must be in (0, 1]", field="top_fraction")

The same fields serve three boundaries, so a default or a help text is written once:

* Python: ``SelectConfig(top_fraction=0.4)`` validates on construction;
* the command line: :func:`vital.cli.options.config_options` turns every field
  into a flag of the same name (``--top-fraction``), and an error in
  ``validate`` names the flag the user typed;
* ``vital.toml``: :meth:`StageConfig.from_mapping` checks a section's keys
  (unknown keys and wrong types are errors naming the key) before building
  the config, and an error names the file, line and key.

``validate`` is the one hook: it raises :class:`~vital.errors.InputError` with
``field`` set to the *field name*; the boundary renames it.  ``choices`` are
checked before ``validate`` runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from vital.errors import InputError

C = TypeVar("C", bound="StageConfig")
_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    help: str = "",
    *,
    choices: tuple[str, ...] | None = None,
    factory: Callable[[], Any] | None = None,
    panel: str | None = None,
    cli: bool = True,
    changes_output: bool = True,
) -> Any:
    """A config field with its help text.

    ``choices`` lists the allowed values of a string (checked, and shown in
    the help); ``factory`` makes a mutable default (a list); ``panel`` groups
    the flag in ``--help``; ``cli=False`` keeps a field that only Python
    callers set (request-body extras, test hooks) off the command line and
    out of ``vital.toml``; ``changes_output=False`` marks a setting of how
    the work is done, not of what it produces (concurrency, timeouts, cache
    folders), so that ``vital run`` does not redo a stage when only it
    changes.  Without a default the field is required.
    """
    metadata = {"help": help, "choices": choices, "panel": panel, "cli": cli, "changes_output": changes_output}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class StageConfig:
    """Base of every stage's config: checks ``choices``, then calls :meth:`validate`."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            choices = spec.metadata.get("choices")
            value = getattr(self, spec.name)
            if choices and value is not None and value not in choices:
                raise InputError(f"{value!r} is not one of {', '.join(choices)}", field=spec.name)
        self.validate()

    def validate(self) -> None:
        """Check values against each other; raise ``InputError(problem, field=<field name>)``."""

    @classmethod
    def settings(cls) -> list[dataclasses.Field]:
        """The fields a user sets (on the command line or in ``vital.toml``)."""
        return [spec for spec in dataclasses.fields(cls) if spec.metadata.get("cli", True)]

    @classmethod
    def types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    @classmethod
    def from_mapping(
        cls: type[C],
        values: Mapping[str, Any],
        *,
        base: Path | None = None,
        where: Callable[[str], tuple[str | None, int | None, str]] | None = None,
    ) -> C:
        """Build the config from a mapping such as a ``vital.toml`` section.

        Every key must be a setting, every value of the setting's type
        (relative paths are taken against ``base``).  ``where(key)`` gives
        ``(file, line, name)`` for an error about ``key``; by default the
        error names the key alone.
        """
        locate = where or (lambda key: (None, None, key))
        known = {spec.name: spec for spec in cls.settings()}
        hints = cls.types()
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                path, line, name = locate(key)
                raise InputError(f"unknown setting (expected one of {', '.join(known)})", path=path,
                                 line=line, field=name)
            try:
                kwargs[key] = coerce(value, hints[key], base)
            except TypeError as exc:
                path, line, name = locate(key)
                raise InputError(str(exc), path=path, line=line, field=name) from None
        try:
            return cls(**kwargs)
        except InputError as exc:
            path, line, field = locate(exc.field) if exc.field in known else (None, None, exc.field)
            raise InputError(exc.problem, path=path, line=line, field=field) from None
        except TypeError as exc:  # a required setting left out
            missing = next((s.name for s in known.values() if s.name not in kwargs and _required(s)), None)
            path, line, name = locate(missing or "")
            raise InputError(f"required setting is missing ({exc})", path=path, line=line, field=name) from None

    def to_dict(self, *, output_only: bool = False) -> dict[str, Any]:
        """The settings as plain JSON values (paths as strings), e.g. for a run record.

        ``output_only`` leaves out the settings marked ``changes_output=False``.
        """
        return {spec.name: _plain(getattr(self, spec.name)) for spec in self.settings()
                if not output_only or spec.metadata.get("changes_output", True)}


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is _MISSING and spec.default_factory is _MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def type_name(annotation: Any) -> str:
    """``float | None`` -> ``"a number"`` and so on, for error messages."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is list:
        return f"a list of {type_name(typing.get_args(annotation)[0]).removeprefix('a ')}s"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def coerce(value: Any, annotation: Any, base: Path | None = None) -> Any:
    """``value`` as ``annotation`` (strings become paths, integers floats); ``TypeError`` when it is not one."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        for option in options:
            try:
                return coerce(value, option, base)
            except TypeError:
                continue
        raise TypeError(f"expected {type_name(annotation)}, found {_describe(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected {type_name(annotation)}, found {_describe(value)}")
        (item,) = typing.get_args(annotation)
        return [coerce(v, item, base) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, found {_describe(value)}")
        _, item = typing.get_args(annotation)
        return {str(k): coerce(v, item, base) for k, v in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is Path:
        if isinstance(value, str | Path):
            path = Path(value).expanduser()
            return path if path.is_absolute() or base is None else base / path
    elif annotation is Any:
        return value
    raise TypeError(f"expected {type_name(annotation)}, found {_describe(value)}")


def _describe(value: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"
