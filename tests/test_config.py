"""The config dataclasses: one source of defaults, help and validation for Python, the CLI and vital.toml."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from vital.cli.options import config_options
from vital.config import StageConfig, coerce, setting
from vital.errors import InputError


@dataclass
class ToyConfig(StageConfig):
    n: int = setting(help="How many.")
    fraction: float | None = setting(None, "A share in (0, 1].")
    mode: str = setting("fast", "How.", choices=("fast", "slow"))
    cache: bool = setting(True, "Use the cache.")
    folder: Path | None = setting(None, "Where.")
    tags: list[str] = setting(factory=list, help="Repeatable.")
    hook: str = setting("x", "Only from Python.", cli=False)

    def validate(self) -> None:
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise InputError("must be in (0, 1]", field="fraction")


def toy_app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_options(ToyConfig)
    def run(name: str = typer.Argument(...), *, config: ToyConfig) -> None:
        typer.echo(f"{name} {config.n} {config.fraction} {config.mode} {config.cache} {config.folder} {config.tags}")

    return app


def test_flags_come_from_the_fields_with_their_defaults_and_help():
    runner = CliRunner()
    result = runner.invoke(toy_app(), ["a", "--n", "3", "--no-cache", "--tags", "x", "--tags", "y"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "a 3 None fast False None ['x', 'y']"
    help_text = runner.invoke(toy_app(), ["--help"], env={"COLUMNS": "200"}).output
    for expected in ("--n", "--fraction", "A share in (0, 1].", "--mode", "fast, slow", "--cache", "--no-cache"):
        assert expected in help_text
    assert "--hook" not in help_text


def test_an_error_names_the_flag_on_the_command_line_and_the_field_in_python():
    result = CliRunner().invoke(toy_app(), ["a", "--n", "1", "--fraction", "2"])
    assert isinstance(result.exception, InputError)
    assert result.exception.field == "--fraction"
    result = CliRunner().invoke(toy_app(), ["a", "--n", "1", "--mode", "medium"])
    assert result.exception.field == "--mode" and "fast, slow" in result.exception.problem
    with pytest.raises(InputError) as caught:
        ToyConfig(n=1, fraction=2.0)
    assert caught.value.field == "fraction"


def test_from_mapping_checks_keys_and_types_and_names_where():
    where = lambda key: ("vital.toml", {"fraction": 7, "n": 5}.get(key, 1), f"[toy] {key}")  # noqa: E731
    config = ToyConfig.from_mapping({"n": 2, "fraction": 1, "folder": "out"}, base=Path("/runs"), where=where)
    assert config.fraction == 1.0 and isinstance(config.fraction, float)
    assert config.folder == Path("/runs/out")
    with pytest.raises(InputError) as caught:
        ToyConfig.from_mapping({"n": 2, "colour": "red"}, where=where)
    assert "unknown setting" in caught.value.problem and caught.value.field == "[toy] colour"
    with pytest.raises(InputError) as caught:
        ToyConfig.from_mapping({"n": "2"}, where=where)
    assert (caught.value.path, caught.value.line) == ("vital.toml", 5)
    assert "expected an integer, found a string" in caught.value.problem
    with pytest.raises(InputError) as caught:
        ToyConfig.from_mapping({"n": 2, "fraction": 3}, where=where)
    assert caught.value.line == 7 and caught.value.field == "[toy] fraction"
    with pytest.raises(InputError) as caught:
        ToyConfig.from_mapping({"hook": "y", "n": 1}, where=where)
    assert "unknown setting" in caught.value.problem
    with pytest.raises(InputError) as caught:
        ToyConfig.from_mapping({}, where=where)
    assert caught.value.field == "[toy] n"


def test_coerce_refuses_what_toml_should_not_turn_into_numbers():
    assert coerce(3, float) == 3.0
    assert coerce(["a"], list[str]) == ["a"]
    for value, annotation in ((True, int), ("0.4", float), (1, bool), (["a", 1], list[str]), (1.5, int)):
        with pytest.raises(TypeError):
            coerce(value, annotation)


def test_to_dict_is_plain_json():
    assert ToyConfig(n=1, folder=Path("/x")).to_dict() == {
        "n": 1, "fraction": None, "mode": "fast", "cache": True, "folder": "/x", "tags": []}


def test_import_vital_is_light():
    code = ("import sys, vital; assert vital.sample.__name__ == 'sample'; "
            "heavy = [m for m in ('torch', 'ray', 'fastapi', 'transformers', 'sklearn', 'matplotlib') "
            "if m in sys.modules]; print(heavy)")
    light = subprocess.run([sys.executable, "-c", "import sys, vital; print([m for m in ('torch', 'ray', "
                            "'fastapi', 'transformers', 'numpy') if m in sys.modules])"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "[]"
    used = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert used.stdout.strip() == "[]"
