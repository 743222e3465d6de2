"""Command-line flags generated from the stage config dataclasses (see :mod:`vital.config`).

Decorate a command with :func:`config_options` and give it a parameter of the
config's type; the decorator adds one flag per setting (``top_fraction`` ->
``--top-fraction``, with the field's default and help) and hands the command
the config built from them::

    @app.command()
    @config_options(EngineConfig, "engine")
    @config_options(JudgeConfig, "config")
    def judge(candidates: Path, ..., config: JudgeConfig, engine: EngineConfig) -> None: ...

An error the config's validation raises names the flag (``--top-fraction``),
not the field.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vital.config import StageConfig
from vital.errors import InputError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(spec: dataclasses.Field) -> str:
    text = spec.metadata.get("help", "")
    choices = spec.metadata.get("choices")
    if choices and not all(c in text for c in choices):
        text = f"{text} One of: {', '.join(choices)}.".strip()
    return text


def _option(spec: dataclasses.Field, annotation: Any) -> inspect.Parameter:
    names = [flag(spec.name)]
    bare = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    default: Any
    if spec.default is not dataclasses.MISSING:
        default = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
    else:
        default = ...
    if bare == [bool] and (default is True or default is None):  # on by default, or tri-state (None: automatic)
        names = [f"{flag(spec.name)}/--no-{spec.name.replace('_', '-')}"]
    info = typer.Option(*names, help=_help(spec), rich_help_panel=spec.metadata.get("panel"),
                        show_default=default is not ... and default is not None and default != [])
    typed = Annotated[annotation, info]
    if default is ...:
        return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=typed)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=typed, default=default)


def _evaluated(parameter: inspect.Parameter, command: Callable[..., Any]) -> inspect.Parameter:
    """The parameter with a string annotation (``from __future__ import annotations``) evaluated in the
    command's module; one that names a type imported only for type checking is left as it is (it is the
    config parameter of an outer decorator, which removes it)."""
    if not isinstance(parameter.annotation, str):
        return parameter
    namespace = getattr(inspect.unwrap(command), "__globals__", {})
    try:
        return parameter.replace(annotation=eval(parameter.annotation, namespace))  # noqa: S307
    except NameError:
        return parameter


def build_config(cls: type[StageConfig], values: dict[str, Any]) -> Any:
    """``cls(**values)`` with a validation error renamed to the flag the user typed."""
    try:
        return cls(**values)
    except InputError as exc:
        if exc.field in {spec.name for spec in dataclasses.fields(cls)}:
            raise InputError(exc.problem, path=exc.path, line=exc.line, field=flag(exc.field)) from None
        raise


def config_options(cls: type[StageConfig], parameter: str = "config", *,
                   exclude: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding ``cls``'s settings as flags and passing ``parameter=cls(**flag values)``.

    ``exclude`` names settings the command sets itself (they keep their
    defaults unless the command passes them through its own arguments).
    """
    hints = cls.types()
    specs = [spec for spec in cls.settings() if spec.name not in exclude]
    added = [_option(spec, hints[spec.name]) for spec in specs]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [_evaluated(p, command).replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for name, p in signature.parameters.items() if name != parameter]
        clash = {p.name for p in own} & {p.name for p in added}
        if clash:
            raise TypeError(f"{command.__name__}: {', '.join(sorted(clash))} defined twice")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {spec.name: kwargs.pop(spec.name) for spec in specs}
            return command(**kwargs, **{parameter: build_config(cls, values)})

        parameters = own + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def exit_if_failed(failed: int, failures: Path, noun: str = "items") -> None:
    """Exit status 1 when some items failed: what finished is kept, and the same command retries the rest."""
    if failed:
        typer.echo(
            f"{failed} {noun} failed; reasons and raw replies are in {failures}. "
            "Run the same command again to retry them.",
            err=True,
        )
        raise typer.Exit(1)
