"""``run.json``: what each stage of a round last did, with enough to reproduce it and to skip it when unchanged.

Per stage: status (``done``, ``skipped`` as unchanged, ``failed``, ``waiting``
for clinicians, ``off``), the settings, the input and output files with
content hashes, record counts, failures, start and end time, duration, and
the versions of vital, Python, torch and transformers.

A stage is unchanged when its *fingerprint* (a hash of the settings that
change its output and of its inputs' hashes) equals the one of its last
complete run and every output it wrote then is still there with the same
hash.  Files are hashed by content (SHA-256, streamed); folders (a model, the
selector) by the names, sizes and modification times of their files, so that
a 14 GB checkpoint is not read to see whether it changed.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from vital.jsonl import write_json_atomic


def file_hash(path: Path) -> str | None:
    """``sha256:<hex>`` of a file's content, ``tree:<hex>`` of a folder's listing, ``None`` if absent."""
    if path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return f"sha256:{digest.hexdigest()}"
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = item.stat()
            digest.update(f"{item.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return f"tree:{digest.hexdigest()}"
    return None


def hashes(paths: list[Path], root: Path) -> dict[str, str | None]:
    """Paths (relative to ``root`` where below it) -> hashes."""
    return {_name(path, root): file_hash(path) for path in paths}


def _name(path: Path, root: Path) -> str:
    path = path.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def fingerprint(settings: dict[str, Any], inputs: dict[str, str | None]) -> str:
    text = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def versions() -> dict[str, str | None]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"vital": version("vital"), "python": platform.python_version(), "torch": version("torch"),
            "transformers": version("transformers")}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class StageRecord:
    status: str
    fingerprint: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str | None] = field(default_factory=dict)
    outputs: dict[str, str | None] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    failed: int = 0
    failures: str | None = None
    notes: list[str] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    versions: dict[str, str | None] = field(default_factory=dict)


@dataclass
class RunRecord:
    """The whole ``run.json``: the config it ran and one :class:`StageRecord` per stage."""

    path: Path
    config: str = ""
    config_sha256: str | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        if not path.is_file():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return cls(path)  # a damaged record only means that every stage is redone
        stages = {name: StageRecord(**value) for name, value in data.get("stages", {}).items()}
        return cls(path, data.get("config", ""), data.get("config_sha256"), stages)

    def save(self) -> None:
        write_json_atomic(self.path, {
            "config": self.config,
            "config_sha256": self.config_sha256,
            "stages": {name: asdict(record) for name, record in self.stages.items()},
        })

    def unchanged(self, name: str, stage_fingerprint: str, root: Path) -> bool:
        """Did ``name``'s last complete run have this fingerprint, and are its outputs still as it left them?"""
        last = self.stages.get(name)
        if last is None or last.status not in ("done", "skipped") or last.fingerprint != stage_fingerprint:
            return False
        return all(file_hash(_resolve(output, root)) == value for output, value in last.outputs.items())


def _resolve(name: str, root: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path
