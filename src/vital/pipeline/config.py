"""``vital.toml``: one section per stage, whose keys are the stage's own settings.

A section's keys are the fields of the stage's config dataclasses (the same
ones that make its command-line flags, with underscores: ``[select]
top_fraction = 0.4``), plus ``enabled`` and the few inputs the command line
takes as arguments (``[figures] src``, ``[tune] base``).  Every value is
checked by those dataclasses; an unknown key or a wrong type is an
:class:`~vital.errors.InputError` naming the file, the line and the key.
Relative paths are relative to the folder of ``vital.toml``.

A stage runs when its section is present and ``enabled`` is not false.
The files a stage writes have fixed names in that folder (see
:mod:`vital.pipeline.stages`), so a round needs no paths beyond its inputs.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vital.config import StageConfig, setting
from vital.errors import InputError
from vital.jsonl import utf8_text


@dataclass
class Switch(StageConfig):
    enabled: bool = setting(True, "Run this stage (false: skip it; stages that need its output are skipped too).")


@dataclass
class FiguresInputs(StageConfig):
    src: Path = setting(help="The corpus: LLaVA-Med figure-caption JSON, BioMed-VITAL demonstrations, or a CSV.")
    demos: Path | None = setting(None, "Demonstrations for the generation prompt (figures with conversations, "
                                       "e.g. BioMed-VITAL's 58 clinician-selected ones).")


@dataclass
class AnnotateSettings(StageConfig):
    """The round's side of annotation: where the answers are kept and what the round waits for.  How the app
    is served (port, overlap, ...) are ``vital annotate serve``'s own settings, in the same section."""

    db: str = setting("annotations.db", "The annotation database: a SQLite file, or a postgresql:// URL.")
    require_preferences: int = setting(
        0, "Clinician preference pairs the selector waits for (0: use what exists, never wait).")
    require_demonstrations: int = setting(
        0, "Clinician-chosen demonstrations generation waits for (0: use the demos file, never wait).")

    def validate(self) -> None:
        for name in ("require_preferences", "require_demonstrations"):
            if getattr(self, name) < 0:
                raise InputError("must not be negative", field=name)


@dataclass
class TuneInputs(StageConfig):
    base: Path | None = setting(None, "The model to tune: a local llava-hf checkpoint folder (none: skip tuning).")


@dataclass(frozen=True)
class SectionSpec:
    """A section: its config classes (``module:Class``) and keys the round wires itself (not settable)."""

    name: str
    configs: tuple[str, ...]
    wired: tuple[str, ...] = ()


_PIPELINE = "vital.pipeline.config"
_ENGINE = "vital.llm.engine:EngineConfig"
SECTIONS = (
    SectionSpec("figures", (f"{_PIPELINE}:FiguresInputs", "vital.figures:ImportConfig")),
    SectionSpec("sample", ("vital.sampling:SampleConfig",)),
    SectionSpec("generate", ("vital.generation:GenerateConfig", _ENGINE), wired=("demos",)),
    SectionSpec("judge", ("vital.judging:JudgeConfig", _ENGINE)),
    SectionSpec("annotate", (f"{_PIPELINE}:AnnotateSettings", "vital.annotate.config:ServeConfig")),
    SectionSpec("selector", ("vital.selector:SelectorConfig",)),
    SectionSpec("select", ("vital.selection:SelectConfig",), wired=("merge",)),
    SectionSpec("tune", (f"{_PIPELINE}:TuneInputs", "vital.tuning:TuneConfig")),
    SectionSpec("eval", ("vital.evaluate:AnswerConfig", "vital.evaluate:VqaConfig", _ENGINE), wired=("details",)),
)
STAGE_NAMES = tuple(spec.name for spec in SECTIONS)


def _load_class(path: str) -> type[StageConfig]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class Section:
    """One stage's settings, validated: ``configs`` maps each config class to its instance."""

    name: str
    enabled: bool
    configs: dict[type, StageConfig]
    keys: dict[str, Any] = field(default_factory=dict)
    """The keys as written in the file (for the run record)."""

    def get(self, cls: type[Any]) -> Any:
        return self.configs[cls]

    def fingerprint_settings(self, root: Path) -> dict[str, Any]:
        """The settings that change what the stage produces (not concurrency, timeouts and the like), with
        paths below ``root`` (the round's folder) relative to it, so that a moved round is still up to date."""

        def relative(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(str(root) + "/"):
                return value[len(str(root)) + 1 :]
            return [relative(v) for v in value] if isinstance(value, list) else value

        return {cls.__name__: {key: relative(value) for key, value in config.to_dict(output_only=True).items()}
                for cls, config in self.configs.items()}


@dataclass
class Round:
    path: Path
    dir: Path
    sections: dict[str, Section]

    def __getitem__(self, name: str) -> Section:
        return self.sections[name]

    def enabled(self, name: str) -> bool:
        return name in self.sections and self.sections[name].enabled


class _Lines:
    """Where sections and keys are in the TOML text (tomllib reports none)."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self.headers: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        section = ""
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                section = header.group(1)
                self.headers.setdefault(section, number)
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault((section, key.group(1).strip('"')), number)

    def of(self, section: str, key: str | None = None) -> int | None:
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.headers.get(section)


def load_round(path: str | Path) -> Round:
    """Read and validate ``vital.toml``; every problem is one :class:`InputError` naming file, line and key."""
    path = Path(path)
    if path.is_dir():
        path = path / "vital.toml"
    if not path.is_file():
        raise InputError("file not found (vital init DIR writes one)", path=path)
    text = utf8_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))  # else "at end of document": the last line
        line = int(match.group(1)) if match else max(1, len(text.splitlines()))
        raise InputError(f"not valid TOML ({exc})", path=path, line=line) from None
    lines = _Lines(text)
    base = path.resolve().parent
    known = {spec.name: spec for spec in SECTIONS}
    for name, values in data.items():
        if name not in known:
            raise InputError(f"unknown section (expected {', '.join(STAGE_NAMES)})", path=path,
                             line=lines.of(name), field=f"[{name}]")
        if not isinstance(values, dict):
            raise InputError("expected a [section] of settings", path=path, line=lines.of("", name), field=name)
    sections = {}
    for spec in SECTIONS:
        if spec.name not in data:
            continue
        values = dict(data[spec.name])
        classes = [Switch] + [_load_class(c) for c in spec.configs]
        owners: dict[str, list[type[StageConfig]]] = {}  # a key two configs share (eval's lang) goes to both
        for cls in classes:
            for setting_field in cls.settings():
                if setting_field.name not in spec.wired:
                    owners.setdefault(setting_field.name, []).append(cls)

        def where(key: str, spec: SectionSpec = spec) -> tuple[str, int | None, str]:
            return str(path), lines.of(spec.name, key), f"[{spec.name}] {key}"

        for key in values:
            if key not in owners:
                problem = (f"is set by the round itself ({spec.name} reads the files other stages write)"
                           if key in spec.wired else f"unknown setting (expected one of {', '.join(owners)})")
                file, key_line, name = where(key)
                raise InputError(problem, path=file, line=key_line, field=name)
        configs = {}
        for cls in classes:
            mine = {key: value for key, value in values.items() if cls in owners[key]}
            configs[cls] = cls.from_mapping(mine, base=base, where=where)
        switch = configs.pop(Switch)
        assert isinstance(switch, Switch)  # from_mapping builds an instance of the class it is called on
        sections[spec.name] = Section(spec.name, switch.enabled, configs, values)
    if "figures" not in data:
        raise InputError("a round needs a [figures] section with src = the corpus to import", path=path)
    return Round(path.resolve(), base, sections)
