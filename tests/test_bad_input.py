"""Every command that reads a file, on every kind of bad file: exit 2, one line, the right file, nothing changed.

One table (issue 13): each file a command reads × the kinds of bad file that
make sense for it.  The kinds are

``empty``             a file of 0 bytes;
``binary``            a PNG image given where text is expected (or a file where a folder is expected);
``non_utf8``          valid records, the second one with a Latin-1 byte in a string;
``torn``              valid records, the last one cut off half-way (in a quoted CSV field; in a TOML string);
``wrong_json_type``   the second record is a JSON list where an object is expected (a result file: a list);
``missing_field``     the second record lacks a field every record needs (a model folder: its weights);
``wrong_field_type``  the second record has a field of the wrong type (a model folder: an unsupported config);
``unknown_key``       a vital.toml key no stage has;
``directory``         a directory where a file is expected;
``missing``           a path that does not exist.

Which cells make sense: JSON and JSONL inputs get every kind but
``unknown_key``; CSV has no JSON types and no field types (``wrong_json_type``
and ``wrong_field_type`` are left out); a model folder (``selector score``'s
MODEL_DIR, ``tune --base``, ``eval answer --model``) gets ``empty`` (an empty
folder), ``binary``, ``torn`` (its JSON cut), ``missing_field``,
``wrong_field_type`` and ``missing``; an annotation database (``--db``) gets
``empty``, ``binary``, ``directory`` and ``missing``; ``vital run``'s
vital.toml gets every kind but the JSON ones, plus ``unknown_key``.
``annotate serve`` validates its inputs (it loads them) before serving, so its
``--figures`` and ``--candidates`` are in the table, with the server replaced
by one that fails the test if it is ever reached.

Each cell checks: exit status 2; stderr exactly one line, ``error: ...``,
naming the bad file (and its line where the kind has one, and the field for
the field kinds); and every file in the run's folder byte-identical afterwards
(each command's outputs exist before the run: an earlier output, its failures
file, an earlier model folder).  Valid inputs come from one small corpus built
once for the module.  One cell per command runs as a child process
(``python -m vital``); the others call the same entry point in this process
with stderr captured at the file descriptor, which sees the same exit status,
the same lines and any exception that escapes; there, loading a model (a
sentence-transformers encoder, a transformers checkpoint) fails the cell:
inputs are checked before any model is loaded.  Cells that still fail in code
another engineer owns are marked ``xfail(strict=True)`` with the reason (``known``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FILE_KINDS = ("empty", "binary", "non_utf8", "torn", "wrong_json_type", "missing_field", "wrong_field_type",
              "directory", "missing")
CSV_KINDS = ("empty", "binary", "non_utf8", "torn", "missing_field", "directory", "missing")
FOLDER_KINDS = ("empty", "binary", "torn", "missing_field", "wrong_field_type", "missing")
DB_KINDS = ("empty", "binary", "directory", "missing")
TOML_KINDS = ("empty", "binary", "non_utf8", "torn", "unknown_key", "wrong_field_type", "directory", "missing")
LINE_KINDS = {"non_utf8", "torn", "wrong_json_type", "missing_field", "wrong_field_type", "unknown_key"}
"""Kinds whose error names a line (in a record file; a result file or a model folder has none)."""
NO_RECORDS_COMMANDS = {"generate", "judge", "select", "selector train"}
"""Issue 13: an empty input of these says that the file has no records."""

DEAD_SERVER = ["--base-url", "http://127.0.0.1:9/v1", "--model", "judge-model", "--max-retries", "0", "--timeout", "2"]


@dataclass(frozen=True)
class Command:
    """A command line with ``{name}`` for its inputs (valid files, one replaced by a bad one) and ``{work}`` for
    the run's folder, and the outputs that exist there before the run (their valid files' names, or bytes)."""

    argv: tuple[str, ...]
    outputs: dict[str, str | bytes]


@dataclass(frozen=True)
class Input:
    """One file a command reads: its placeholder, the valid file the bad ones are made from, and how."""

    command: str
    slot: str  # as --help names it
    key: str  # the placeholder in the command's argv
    form: str  # jsonl | json | object | csv | folder | db | toml
    kinds: tuple[str, ...]
    source: str | None = None  # the valid file the bad ones are made from (default: ``key``)
    required: str | None = None  # a field every record needs
    wrong: tuple[str, Any] | None = None  # a field and a value of the wrong type
    known: tuple[tuple[str, str], ...] = ()  # (kind, why) of cells known to fail, until the owner fixes them


FAILURES = b'{"id":"earlier","stage":"earlier run","reason":"kept until a run replaces it"}\n'
COMMANDS = {
    "figures import": Command(("figures", "import", "{src}", "--out", "{work}/figures.jsonl"),
                              {"figures.jsonl": "figures", "figures.failures.jsonl": FAILURES}),
    "sample": Command(("sample", "{figures}", "--n", "2", "--out", "{work}/sample.jsonl"),
                      {"sample.jsonl": "figures"}),
    "generate": Command(("generate", "{figures}", "--backend", "caption", "--demos", "{demos}",
                         "--out", "{work}/candidates.jsonl"),
                        {"candidates.jsonl": "first_candidate", "candidates.failures.jsonl": FAILURES}),
    "judge": Command(("judge", "{candidates}", "--figures", "{figures}", "--backend", "heuristic",
                      "--out", "{work}/scores.jsonl"),
                     {"scores.jsonl": "first_score", "scores.failures.jsonl": FAILURES}),
    "annotate load": Command(("annotate", "load", "--db", "{work}/annotations.db", "--figures", "{figures}",
                              "--candidates", "{candidates}"), {"annotations.db": "db"}),
    "annotate serve": Command(("annotate", "serve", "--db", "{work}/annotations.db", "--figures", "{figures}",
                               "--candidates", "{candidates}", "--port", "8765"), {"annotations.db": "db"}),
    "annotate export": Command(("annotate", "export", "--db", "{db}", "--kind", "preferences",
                                "--out", "{work}/preferences.jsonl"), {"preferences.jsonl": "preferences"}),
    "annotate stats": Command(("annotate", "stats", "--db", "{db}", "--scores", "{scores}", "--json",
                               "--plot", "{work}/agreement.png"), {"agreement.png": "binary"}),
    "selector train": Command(("selector", "train", "--candidates", "{candidates}", "--figures", "{figures}",
                               "--scores", "{scores}", "--preferences", "{preferences}", "--epochs", "1",
                               "--out", "{work}/selector"),
                              {"selector/selector.json": b'{"earlier": true}\n', "selector/head.pt": b"weights"}),
    "selector score": Command(("selector", "score", "{selector}", "--candidates", "{candidates}",
                               "--figures", "{figures}", "--out", "{work}/selector-scores.jsonl"),
                              {"selector-scores.jsonl": "scores"}),
    "selector sweep": Command(("selector", "sweep", "--candidates", "{candidates}", "--figures", "{figures}",
                               "--scores", "{scores}", "--preferences", "{preferences}", "--human-weight", "1,10",
                               "--epochs", "1", "--out", "{work}/sweep"),
                              {"sweep/sweep.json": b'{"earlier": true}\n'}),
    "select": Command(("select", "{candidates}", "--scores", "{scores}", "--figures", "{figures}",
                       "--merge", "{selected}", "--out", "{work}/selected.json"),
                      {"selected.json": "selected", "selected.failures.jsonl": FAILURES}),
    "candidates import": Command(("candidates", "import", "{src}", "--out", "{work}/imported.jsonl"),
                                 {"imported.jsonl": "candidates"}),
    "tune": Command(("tune", "{selected}", "--base", "{base}", "--max-steps", "1", "--out", "{work}/tuned"),
                    {"tuned/tune.json": b'{"earlier": true}\n'}),
    "eval vqa": Command(("eval", "vqa", "--gt", "{questions}", "--pred", "{pred}",
                         "--details", "{work}/details.jsonl"), {"details.jsonl": "pred"}),
    "eval compare": Command(("eval", "compare", "--gt", "{questions}", "--a", "{pred}", "--b", "{pred_b}",
                             "--bootstrap", "10"), {}),
    "eval answer": Command(("eval", "answer", "--questions", "{questions}", "--images", "{root}",
                            "--backend", "transformers", "--model", "{base}", "--out", "{work}/answers.jsonl"),
                           {"answers.jsonl": "first_pred", "answers.failures.jsonl": FAILURES}),
    "eval chat": Command(("eval", "chat", "--questions", "{chat_questions}", "--answers", "{chat_answers}",
                          *DEAD_SERVER, "--out", "{work}/reviews.jsonl"),
                         {"reviews.jsonl": "first_review", "reviews.failures.jsonl": FAILURES}),
    "eval chat-summary": Command(("eval", "chat-summary", "{reviews}"), {}),
    "eval winrate": Command(("eval", "winrate", "--questions", "{chat_questions}", "--a", "{chat_answers}",
                             "--b", "{chat_answers_b}", *DEAD_SERVER, "--out", "{work}/verdicts.jsonl"),
                            {"verdicts.jsonl": b"", "verdicts.failures.jsonl": FAILURES}),
    "eval report": Command(("eval", "report", "{result}", "--out", "{work}/report"),
                           {"report/report.md": b"# an earlier report\n"}),
    "run": Command(("run", "{toml}"), {"run.json": b'{"earlier": true}\n'}),
}

FIGURE = {"required": "caption", "wrong": ("mentions", "a string, not a list")}
CANDIDATE = {"required": "conversations", "wrong": ("figure_id", 7)}
SCORE = {"required": "score", "wrong": ("score", "high")}
PREFERENCE = {"required": "rejected", "wrong": ("weight", "heavy")}
LLAVA_MED = {"required": "fig_caption", "wrong": ("in_text_mention", "a string, not a list")}
LLAVA = {"required": "id", "wrong": ("conversations", "a string, not a list")}
GROUND_TRUTH = {"required": "answer_type", "wrong": ("conversations", "a string, not a list")}
ANSWER = {"required": "text", "wrong": ("text", 5)}
CHAT_QUESTION = {"required": "text", "wrong": ("question_id", [0])}
REVIEW = {"required": "model_score", "wrong": ("model_score", "high")}
MODEL_DIR = {"kinds": FOLDER_KINDS}

INPUTS = [
    Input("figures import", "SRC.json", "src", "json", FILE_KINDS, source="corpus_json", **LLAVA_MED),
    Input("figures import", "SRC.jsonl", "src", "jsonl", FILE_KINDS, source="corpus_jsonl", **LLAVA_MED),
    Input("figures import", "SRC.csv", "src", "csv", CSV_KINDS, source="corpus_csv", required="caption"),
    Input("sample", "FIGURES", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("generate", "FIGURES", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("generate", "--demos", "demos", "jsonl", FILE_KINDS, required="caption",
          wrong=("conversations", "a string, not a list")),
    Input("judge", "CANDIDATES", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("judge", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("annotate load", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("annotate load", "--candidates", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("annotate serve", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("annotate serve", "--candidates", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("annotate export", "--db", "db", "db", DB_KINDS),
    Input("annotate stats", "--db", "db", "db", DB_KINDS),
    Input("annotate stats", "--scores", "scores", "jsonl", FILE_KINDS, **SCORE),
    Input("selector train", "--candidates", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("selector train", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("selector train", "--scores", "scores", "jsonl", FILE_KINDS, **SCORE),
    Input("selector train", "--preferences", "preferences", "jsonl", FILE_KINDS, **PREFERENCE),
    Input("selector score", "MODEL_DIR", "selector", "folder", FOLDER_KINDS),
    Input("selector score", "--candidates", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("selector score", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("selector sweep", "--candidates", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("selector sweep", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("selector sweep", "--scores", "scores", "jsonl", FILE_KINDS, **SCORE),
    Input("selector sweep", "--preferences", "preferences", "jsonl", FILE_KINDS, **PREFERENCE),
    Input("select", "CANDIDATES", "candidates", "jsonl", FILE_KINDS, **CANDIDATE),
    Input("select", "--scores", "scores", "jsonl", FILE_KINDS, **SCORE),
    Input("select", "--figures", "figures", "jsonl", FILE_KINDS, **FIGURE),
    Input("select", "--merge", "selected", "json", FILE_KINDS, **LLAVA),
    Input("candidates import", "SOURCES.json", "src", "json", FILE_KINDS, source="selected", **LLAVA),
    Input("candidates import", "SOURCES.jsonl", "src", "jsonl", FILE_KINDS, source="selected_jsonl", **LLAVA),
    Input("tune", "DATA", "selected", "json", FILE_KINDS, **LLAVA),
    Input("tune", "--base", "base", "folder", FOLDER_KINDS),
    Input("eval vqa", "--gt", "questions", "json", FILE_KINDS, **GROUND_TRUTH),
    Input("eval vqa", "--pred", "pred", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval compare", "--gt", "questions", "json", FILE_KINDS, **GROUND_TRUTH),
    Input("eval compare", "--a", "pred", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval compare", "--b", "pred_b", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval answer", "--questions", "questions", "json", FILE_KINDS, **GROUND_TRUTH),
    Input("eval answer", "--model", "base", "folder", FOLDER_KINDS),
    Input("eval chat", "--questions", "chat_questions", "jsonl", FILE_KINDS, **CHAT_QUESTION),
    Input("eval chat", "--answers", "chat_answers", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval chat-summary", "REVIEWS", "reviews", "jsonl", FILE_KINDS, **REVIEW),
    Input("eval winrate", "--questions", "chat_questions", "jsonl", FILE_KINDS, **CHAT_QUESTION),
    Input("eval winrate", "--a", "chat_answers", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval winrate", "--b", "chat_answers_b", "jsonl", FILE_KINDS, **ANSWER),
    Input("eval report", "RESULTS", "result", "object", FILE_KINDS, required="closed_accuracy",
          wrong=("n_open", "many")),
    Input("run", "vital.toml", "toml", "toml", TOML_KINDS),
]

CHILD_CELLS = {(command, next(i.slot for i in INPUTS if i.command == command), "binary") for command in COMMANDS}
"""The cell of each command that runs as a child process: its first input, binary."""


def _cells() -> list[Any]:
    cells = []
    for spec in INPUTS:
        known = dict(spec.known)
        for kind in spec.kinds:
            name = f"{spec.command.replace(' ', '-')}-{spec.slot}-{kind}"
            marks = [pytest.mark.xfail(strict=True, reason=known[kind])] if kind in known else []
            cells.append(pytest.param(spec, kind, id=name, marks=marks))
    return cells


# --- the valid inputs, built once -------------------------------------------------------------------------------


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def _first_line(path: Path) -> bytes:
    return path.read_bytes().split(b"\n", 1)[0] + b"\n"


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every valid input (path, or for outputs bytes), from the demo corpus: real images, real stage outputs."""
    from vital.demo.corpus import build_corpus, write_questions
    from vital.figures import import_figures
    from vital.generation import GenerateConfig, generate
    from vital.judging import JudgeConfig, judge
    from vital.selection import select
    from vital.selector import Selector, SelectorConfig
    from vital.tuning.tiny import build_tiny_llava

    root = tmp_path_factory.mktemp("valid")
    corpus, demos = build_corpus(root)
    figures = root / "figures.jsonl"
    import_figures(corpus, figures)
    figure_records = [json.loads(line) for line in figures.read_text().splitlines()]
    llava_med = [{"pair_id": f["id"], "fig_caption": f["caption"], "image": f["image"],
                  "in_text_mention": [{"tokens": m} for m in f["mentions"]],
                  "domain": {d: True for d in f["domains"]}} for f in figure_records]
    corpus_json = root / "llava_med.json"
    corpus_json.write_text("[\n" + ",\n".join(json.dumps(r) for r in llava_med) + "\n]\n")
    candidates = generate(figures, root / "candidates.jsonl", GenerateConfig(backend="caption")).out
    scores = judge(candidates, figures, root / "scores.jsonl", JudgeConfig(backend="heuristic")).out
    ids = [json.loads(line)["id"] for line in candidates.read_text().splitlines()]
    preferences = _jsonl(root / "preferences.jsonl", [
        {"figure_id": a.split("/")[0], "chosen": a, "rejected": b, "source": "human", "annotator": "dr-a"}
        for a, b in zip(ids[::2], ids[1::2], strict=True)])
    selector = root / "selector"
    Selector(SelectorConfig(text_encoder="hashing", epochs=1, hidden_size=8), cache_dir=root / "cache").fit(
        candidates, figures, scores=scores, preferences=preferences).save(selector)
    selected = select(candidates, scores, root / "selected.json", figures=figures).out
    selected_records = json.loads(selected.read_text())
    selected.write_text("[\n" + ",\n".join(json.dumps(r) for r in selected_records) + "\n]\n")
    questions = write_questions(corpus, root / "questions.json")
    question_records = json.loads(questions.read_text())
    questions.write_text("[\n" + ",\n".join(json.dumps(r) for r in question_records) + "\n]\n")
    pred = _jsonl(root / "pred.jsonl", [{"question_id": q["id"], "text": q["conversations"][1]["value"]}
                                        for q in question_records])
    pred_b = _jsonl(root / "pred_b.jsonl", [{"question_id": q["id"], "text": "no"} for q in question_records])
    chat_questions = _jsonl(root / "chat_questions.jsonl", [
        {"question_id": i, "text": "Describe the image.\n<image>", "gpt4_answer": f["caption"],
         "fig_caption": f["caption"], "domain": {d: True for d in f["domains"]}, "type": "detailed_description"}
        for i, f in enumerate(figure_records[:4])])
    chat_answers = _jsonl(root / "chat_answers.jsonl", [{"question_id": i, "text": "An image."} for i in range(4)])
    chat_answers_b = _jsonl(root / "chat_answers_b.jsonl", [{"question_id": i, "text": "A scan."} for i in range(4)])
    reviews = _jsonl(root / "reviews.jsonl", [
        {"question_id": i, "type": "detailed_description", "domain": {"mri": True}, "reference_score": 8,
         "model_score": 5} for i in range(4)])
    from vital.evaluate.vqa import eval_vqa

    result = root / "vqa.json"
    result.write_text(json.dumps(eval_vqa(questions, pred).to_json(), indent=2))
    from vital.annotate import load_corpus

    db = root / "annotations.db"
    load_corpus(f"sqlite:///{db}", figures, candidates)
    from vital.pipeline import init

    toml = init(root / "round")
    base = build_tiny_llava(root / "tiny-llava")
    return {
        "root": root, "corpus_csv": corpus, "corpus_json": corpus_json, "figures": figures, "demos": demos,
        "candidates": candidates, "scores": scores, "preferences": preferences, "selector": selector,
        "selected": selected, "selected_jsonl": _jsonl(root / "selected.jsonl", selected_records),
        "corpus_jsonl": _jsonl(root / "llava_med.jsonl", llava_med), "questions": questions, "pred": pred,
        "pred_b": pred_b, "chat_questions": chat_questions, "chat_answers": chat_answers,
        "chat_answers_b": chat_answers_b, "reviews": reviews, "result": result, "db": db, "toml": toml,
        "base": base, "binary": (root / "images" / "shepp_logan_phantom.png").read_bytes(),
        "first_candidate": _first_line(candidates), "first_score": _first_line(scores),
        "first_pred": _first_line(pred), "first_review": _first_line(reviews),
    }


# --- bad files --------------------------------------------------------------------------------------------------


def _with_latin1(record: dict) -> bytes:
    """``record`` as JSON with one more string field holding a Latin-1 (not UTF-8) byte."""
    return json.dumps(record).encode()[:-1] + b', "note": "caf\xe9"}'


def _bad_records(spec: Input, kind: str, records: list[dict]) -> list[bytes]:
    """The encoded records of a bad record file: the first valid, the second (the last) made bad."""
    first, second = records[0], dict(records[1])
    if kind == "non_utf8":
        bad = _with_latin1(second)
    elif kind == "torn":
        text = json.dumps(second).encode()
        bad = text[: len(text) // 2]
    elif kind == "wrong_json_type":
        bad = json.dumps(["not", "an", "object"]).encode()
    elif kind == "missing_field":
        assert spec.required in second, (spec.required, second)
        del second[spec.required]
        bad = json.dumps(second).encode()
    else:
        assert spec.wrong is not None
        second[spec.wrong[0]] = spec.wrong[1]
        bad = json.dumps(second).encode()
    return [json.dumps(first).encode(), bad]


def _record_file(spec: Input, kind: str, source: Path) -> bytes:
    if spec.form == "jsonl":
        records = [json.loads(line) for line in source.read_text().splitlines()[:2]]
        lines = _bad_records(spec, kind, records)
        return b"\n".join(lines) + (b"" if kind == "torn" else b"\n")
    if spec.form == "json":  # one element per line: the second starts on line 3
        records = json.loads(source.read_text())[:2]
        lines = _bad_records(spec, kind, records)
        return b"[\n" + b",\n".join(lines) + (b"" if kind == "torn" else b"\n]\n")
    data = json.loads(source.read_text())  # a result object
    if kind == "non_utf8":
        return _with_latin1(data)
    if kind == "torn":
        text = json.dumps(data, indent=2).encode()
        return text[: len(text) // 2]
    if kind == "wrong_json_type":
        return json.dumps([data]).encode()
    if kind == "missing_field":
        del data[spec.required]
    else:
        data[spec.wrong[0]] = spec.wrong[1]
    return json.dumps(data, indent=2).encode()


def _csv_file(kind: str, source: Path) -> bytes:
    rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8"))))[:3]
    header, first, second = rows
    caption = header.index("caption")
    if kind == "missing_field":
        second[caption] = ""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows([header, first, second])
    text = buffer.getvalue().encode("utf-8")
    if kind == "non_utf8":
        text = text.replace(second[caption].encode(), second[caption].encode() + b" caf\xe9")
    if kind == "torn":  # cut inside the second record's quoted caption
        text = text[: text.index(second[caption].encode()) + 20]
    return text


def _toml_file(kind: str, source: Path) -> bytes:
    text = source.read_text(encoding="utf-8")
    if kind == "non_utf8":
        return text.replace("[sample]\n", "[sample]\n# caf\xe9\n").encode("latin-1")
    if kind == "torn":
        return text[: text.index('model = "gpt-4o"') + 12].encode()
    if kind == "unknown_key":
        return text.replace("[sample]\n", "[sample]\ntop_fractoin = 0.4\n").encode()
    return text.replace("[sample]\n", '[sample]\nseed = "zero"\n').encode()


def _folder(spec: Input, kind: str, source: Path, bad: Path) -> None:
    """A model folder with something wrong: an empty one, a copy without weights, or one with a bad config."""
    if kind == "empty":
        bad.mkdir()
        return
    shutil.copytree(source, bad)
    manifest = bad / ("selector.json" if spec.command == "selector score" else "config.json")
    if kind == "torn":
        text = manifest.read_bytes()
        manifest.write_bytes(text[: len(text) // 2])
    elif kind == "missing_field":
        for weights in [*bad.glob("*.safetensors"), *bad.glob("*.pt")]:
            weights.unlink()
    elif spec.command == "selector score":
        data = json.loads(manifest.read_text())
        data["input_dim"] = "wide"
        manifest.write_text(json.dumps(data))
    else:  # a LLaVA checkpoint of a family these commands do not load (LLaVA-Med's original mistral layout)
        data = json.loads(manifest.read_text())
        data["model_type"] = "llava_mistral"
        manifest.write_text(json.dumps(data))


def make_bad(spec: Input, kind: str, valid: dict[str, Any], folder: Path) -> Path:
    source = Path(valid[spec.source or spec.key])
    bad = folder / f"bad-{source.name}"
    if kind == "missing":
        return bad
    if kind == "directory":
        bad.mkdir()
        (bad / "inside.txt").write_text("a folder, not a file\n")
        return bad
    if spec.form == "folder":
        if kind == "binary":
            bad.write_bytes(valid["binary"])
        else:
            _folder(spec, kind, source, bad)
        return bad
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "binary":
        bad.write_bytes(valid["binary"])
    elif spec.form == "csv":
        bad.write_bytes(_csv_file(kind, source))
    elif spec.form == "toml":
        bad.write_bytes(_toml_file(kind, source))
    else:
        bad.write_bytes(_record_file(spec, kind, source))
    return bad


# --- running a command ------------------------------------------------------------------------------------------


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str


def _child(argv: list[str], cwd: Path) -> Run:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "sk-test-not-a-key"}
    done = subprocess.run([sys.executable, "-m", "vital", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)
    return Run(done.returncode, done.stdout, done.stderr)


SHOWN_BY_DEFAULT = (UserWarning, FutureWarning, RuntimeWarning, SyntaxWarning, UnicodeWarning, BytesWarning)


def _in_process(argv: list[str], capfd: pytest.CaptureFixture[str]) -> Run:
    """``vital.cli.main`` as ``python -m vital`` runs it; an escaping exception is printed as Python would."""
    from vital.cli import main

    logger = logging.getLogger("vital")
    saved = (list(logger.handlers), logger.level, logger.propagate, sys.argv)
    capfd.readouterr()
    status = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sys.argv = ["vital", *argv]
            main()
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # what a child would print before exiting with status 1
            traceback.print_exc()
            status = 1
        finally:
            logger.handlers, logger.level, logger.propagate, sys.argv = saved
    out, err = capfd.readouterr()
    shown = [w for w in caught if issubclass(w.category, SHOWN_BY_DEFAULT)]
    err += "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in shown)
    return Run(status, out, err)


@pytest.fixture
def no_models_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model before the inputs are checked, or serving despite bad input, fails the cell."""
    import transformers

    import vital.annotate
    import vital.embeddings

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{what} before the inputs were checked")
        return refused

    monkeypatch.setattr(vital.embeddings.TextEncoder, "model", property(refuse("a text encoder was loaded")))
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained",
                        classmethod(refuse("a checkpoint was loaded")))

    monkeypatch.setattr(vital.annotate, "serve", refuse("the app was served"), raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
            for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("spec", "kind"), _cells())
@pytest.mark.usefixtures("no_models_no_server")
def test_bad_input_exits_2_with_one_line_naming_the_file(
    spec: Input, kind: str, valid: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = COMMANDS[spec.command]
    work = tmp_path / "work"
    work.mkdir()
    bad = make_bad(spec, kind, valid, tmp_path)
    for name, content in command.outputs.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        value = valid[content] if isinstance(content, str) else content
        target.write_bytes(value if isinstance(value, bytes) else Path(value).read_bytes())
    before = _snapshot(work)
    paths = {key: str(value) for key, value in valid.items() if isinstance(value, Path)}
    argv = [part.format(**{**paths, spec.key: str(bad), "work": str(work)}) for part in command.argv]

    monkeypatch.chdir(work)
    child = (spec.command, spec.slot, kind) in CHILD_CELLS
    run = _child(argv, work) if child else _in_process(argv, capfd)

    lines = run.stderr.splitlines()
    assert run.status == 2 and len(lines) == 1, f"exit {run.status}, stderr:\n{run.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert str(bad) in line, f"the bad file {bad} is not named: {line}"
    if kind in LINE_KINDS and spec.form in ("jsonl", "json", "csv", "toml"):
        number = {"jsonl": "2", "json": "3", "csv": "3", "toml": r"\d+"}[spec.form]
        assert re.search(f"{re.escape(str(bad))}:{number}:", line), f"line {number} is not named: {line}"
    if kind in ("missing_field", "wrong_field_type") and spec.form in ("jsonl", "json"):
        field = spec.required if kind == "missing_field" else spec.wrong[0]
        assert field in line, f"field {field!r} is not named: {line}"
    if kind == "empty" and spec.command in NO_RECORDS_COMMANDS:
        assert "has no records" in line or "file is empty" in line, line
    assert _snapshot(work) == before, "the run changed or created files in its output folder"
