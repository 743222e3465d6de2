"""Model-connection flags shared by every command that calls a model (generate, judge, eval).

Decorate a command with :func:`engine_options` and give it a parameter
``engine: EngineConfig``; the decorator adds the flags below to the command
and hands the function one :class:`~vital.llm.EngineConfig` built from them::

    @app.command()
    @engine_options
    def judge(candidates: Path, ..., engine: EngineConfig) -> None: ...

``backend_option`` builds the ``--backend`` flag, whose offline choice
differs per command (``caption`` for generate, ``heuristic`` for judge).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # vital.llm pulls in aiohttp; `vital --help` should not wait for it
    from vital.llm import EngineConfig

PANEL = "Model connection"


def _option(*names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=PANEL)


# name -> (annotation, default); the order is the order in --help.
_ENGINE_FLAGS: dict[str, tuple[Any, Any]] = {
    "base_url": (Annotated[str, _option("--base-url", help="OpenAI-compatible endpoint (OpenAI, vLLM, "
                                        "Ollama, llama.cpp), ending in /v1.")], "https://api.openai.com/v1"),
    "model": (Annotated[str, _option("--model", help="Model name sent with each request.")], "gpt-4o"),
    "api_key_env": (Annotated[str, _option("--api-key-env", help="Environment variable holding the API "
                                           "key (never taken from the command line).")], "OPENAI_API_KEY"),
    "azure_endpoint": (Annotated[str | None, _option("--azure-endpoint", help="Azure OpenAI resource "
                                                     "endpoint; switches to Azure's URL scheme.")], None),
    "azure_deployment": (Annotated[str | None, _option("--azure-deployment",
                                                       help="Azure OpenAI deployment name.")], None),
    "azure_api_version": (Annotated[str, _option("--azure-api-version", help="Azure OpenAI API version.")],
                          "2024-06-01"),
    "concurrency": (Annotated[int, _option("--concurrency", help="Requests in flight at most.")], 8),
    "max_retries": (Annotated[int, _option("--max-retries", help="Retries per call after 429, 5xx, "
                                           "timeouts and unusable replies.")], 5),
    "timeout": (Annotated[float, _option("--timeout", help="Seconds a request may take in all.")], 120.0),
    "rpm": (Annotated[float | None, _option("--rpm", help="Requests-per-minute limit to keep under.")], None),
    "tpm": (Annotated[float | None, _option("--tpm", help="Tokens-per-minute limit to keep under "
                                            "(estimated before, settled after each call).")], None),
    "image_max_side": (Annotated[int | None, _option("--image-max-side", help="Downscale images so their "
                                                     "longer side is at most this many pixels.")], None),
    "cache": (Annotated[bool, _option("--cache/--no-cache", help="Answer repeated requests from the "
                                      "response cache.")], True),
    "prices": (Annotated[Path | None, _option("--prices", help='JSON {"model": {"input": $/1M tokens, '
                                              '"output": $/1M tokens}} for the cost estimate.')], None),
}


def build_engine_config(*, cache: bool, prices: Path | None, **flags: Any) -> EngineConfig:
    from vital.llm import EngineConfig, load_prices

    config = EngineConfig(use_cache=cache, **flags)
    if prices is not None:
        config.prices.update(load_prices(prices))
    return config


def flag_group(
    flags: dict[str, tuple[Any, Any]],
    parameter: str,
    build: Callable[..., Any],
    *,
    type_only_names: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds ``flags`` (name -> (annotation, default)) to a command and hands the
    command one object, ``parameter=build(**flag values)``, instead of the individual flags.

    ``type_only_names`` are names the command's module imports only for type checking.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True, locals=dict.fromkeys(type_only_names, object))
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for name, p in signature.parameters.items()
            if name != parameter
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, (annotation, default) in flags.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in flags}
            return command(**kwargs, **{parameter: build(**values)})

        parameters = own + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


engine_options = flag_group(_ENGINE_FLAGS, "engine", build_engine_config, type_only_names=("EngineConfig",))
"""Add the model-connection flags to a command and pass it ``engine=EngineConfig(...)``."""


def backend_option(offline: str, offline_help: str) -> Any:
    """``--backend`` for a command whose choices are ``openai`` and one offline backend."""
    return typer.Option(
        "openai", "--backend",
        help=f"openai: any OpenAI-compatible server (see {PANEL}); {offline}: {offline_help}.",
    )


def exit_if_failed(failed: int, failures: Path, noun: str = "items") -> None:
    """Exit status 1 when some items failed: what finished is kept, and the same command retries the rest."""
    if failed:
        typer.echo(
            f"{failed} {noun} failed; reasons and raw replies are in {failures}. "
            "Run the same command again to retry them.",
            err=True,
        )
        raise typer.Exit(1)
