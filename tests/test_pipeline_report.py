"""The round report (vital.pipeline.report): sections, counts, absent files, escaping, intervals; and in Chromium."""

from __future__ import annotations

import json
import logging
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vital.pipeline.record import RunRecord, StageRecord
from vital.pipeline.report import SECTIONS, write_report

DOMAINS = ("ct_scan", "mri", "histology")
HOSTILE = '<script>alert("caption")</script> & <b>bold</b>'
FIGURES = 9


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def conversation(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]


def vqa_result(benchmark: str, closed: float, recall: float, label_sets: dict[str, str]) -> dict:
    """A saved `vital eval vqa --json` result (its shape at the time of writing: metrics, ci95, breakdown)."""

    def cell(n_open: int, n_closed: int, shift: float) -> dict:
        return {"recall": recall + shift, "open_accuracy": recall - 10 + shift, "closed_accuracy": closed + shift,
                "n_open": n_open, "n_closed": n_closed,
                "ci95": {"recall": [recall + shift - 6, recall + shift + 6], "open_accuracy": None,
                         "closed_accuracy": [closed + shift - 5, closed + shift + 5]}}

    return {
        "exact_match": 20.0, "f1": 30.0, "precision": 25.0, "recall": recall, "bleu": 5.0, "bleu_1": 9.0,
        "bleu_2": 4.0, "bleu_3": 2.0, "open_accuracy": recall - 10, "closed_accuracy": closed, "closed_recall": 50.0,
        "n_open": 60, "n_closed": 80,
        "ci95": {"recall": [recall - 4, recall + 4], "closed_accuracy": [closed - 3.5, closed + 3.5]},
        "mode": "default", "benchmark": benchmark,
        "breakdown": {
            "organ": {"CHEST": cell(30, 40, 2), "ABD": cell(25, 33, -1), "HEAD": cell(5, 7, 4)},
            "question_type": {"PRES": cell(40, 50, 0), "ABN": cell(20, 30, 1)},
        },
        "label_sets": label_sets,
    }


def make_round(root: Path) -> dict:
    """A round folder with every file of a finished round; returns what the report should say about it."""
    import pydicom.data

    root.mkdir(parents=True, exist_ok=True)
    images = root / "images"
    images.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), images / "ct.dcm")
    rng = np.random.default_rng(0)
    figures = []
    for number in range(FIGURES):
        image = "images/ct.dcm" if number == 0 else f"images/fig{number}.png"
        if number:
            Image.fromarray((rng.random((60, 80, 3)) * 255).astype("uint8")).save(root / image)
        caption = HOSTILE if number == 1 else f"Figure {number}: a {DOMAINS[number % 3]} image with a finding."
        figures.append({"id": f"fig{number}", "image": image, "caption": caption, "mentions": [],
                        "domains": [DOMAINS[number % 3]]})
    write_jsonl(root / "figures.jsonl", figures)
    write_jsonl(root / "figures.failures.jsonl", [{"id": "broken", "stage": "figures", "reason": "image not found"}])
    write_jsonl(root / "demos.jsonl", [{**figures[i], "conversations": conversation("What is shown?", "A finding.")}
                                       for i in (0, 1)])
    write_jsonl(root / "sample.jsonl", [{**figures[i], "cluster": i % 3} for i in range(6)])

    candidates, scores, selector_scores, selected = [], [], [], []
    for number in range(FIGURES):
        for k in range(3):
            cid = f"fig{number}/c{k}"
            candidates.append({
                "id": cid, "figure_id": f"fig{number}",
                "conversations": conversation(f"Question {k} about figure {number}?",
                                              f"Answer {k} <i>about</i> figure {number}."),
                "generator": {"backend": "openai", "model": "gpt-4o-mini", "k": k},
                "usage": {"prompt_tokens": 100_000, "completion_tokens": 20_000, "cached": k == 2, "attempts": 1},
            })
            scores.append({"candidate_id": cid, "score": 9 - 2 * k + number / 10, "source": "model",
                           "judge": "rubric-judge"})
            selector_scores.append({"candidate_id": cid, "score": (1.0, 2.0, 0.5)[k] + (number / 10 if k < 2 else 0),
                                    "source": "selector", "judge": "selector:selector"})
        selected.append({"id": f"fig{number}/c1", "image": figures[number]["image"],
                         "conversations": candidates[-2]["conversations"]})
    selected.append({"id": "merged-1", "image": "x.png", "conversations": conversation("Q?", "A.")})
    write_jsonl(root / "candidates.jsonl", candidates)
    write_jsonl(root / "candidates.failures.jsonl", [
        {"id": "fig8/c3", "stage": "generate", "reason": "reply is not JSON"},
        {"id": "fig8/c4", "stage": "generate", "reason": "reply is not JSON"},
    ])
    write_audit_log(root / "candidates.llm.sqlite")
    write_jsonl(root / "scores.jsonl", scores)
    write_jsonl(root / "selector-scores.jsonl", selector_scores)
    write_json(root / "selected.json", selected)
    write_jsonl(root / "model-preferences.jsonl", [
        {"figure_id": f"fig{n}", "chosen": f"fig{n}/c0", "rejected": f"fig{n}/c1", "source": "model"}
        for n in range(FIGURES)])
    write_jsonl(root / "model-preferences.ties.jsonl", [
        {"figure_id": f"fig{n}", "a": f"fig{n}/c1", "b": f"fig{n}/c2", "verdicts": ["A", "B"]} for n in range(3)])

    expected = {"kappa": annotate(root)}

    write_json(root / "selector" / "metrics.json", {
        "pairs": {"human_train": 12, "model_pairs": 200, "held_out": 6},
        "held_out_source": "human", "epochs_run": 4, "best_epoch": 3,
        "held_out": {"pairs": 6, "agreement": 0.8333, "auc": 0.9, "map": 0.95, "mean_rank": 0.2},
        "judge_on_held_out": {"pairs": 6, "agreement": 0.6667, "auc": 0.7, "map": 0.8, "mean_rank": 0.4},
    })
    write_json(root / "selector" / "curves.json", [
        {"epoch": e, "train_loss": 1 / e, "held_out_loss": 1.2 / e, "train_agreement": 0.6 + e / 20,
         "held_out_agreement": 0.55 + e / 25} for e in range(1, 5)])
    write_json(root / "selector" / "selector.json", {"config": {"human_weight": 100},
                                                     "encoders": {"text": "sentence:minilm", "image": "descriptor"}})
    write_json(root / "selector" / "sweep.json", {
        "weights": [1, 10, 100], "clinician_pairs": 12, "weight_has_effect": True, "note": None,
        "runs": [{"human_weight": w, "agreement": a, "auc": 0.8, "map": 0.9, "mean_rank": 0.3,
                  "judge_agreement": 0.6667} for w, a in ((1, 0.5), (10, 0.6667), (100, 0.8333))]})

    write_json(root / "tuned" / "tune.json", {  # as vital.tuning.train writes it
        "status": "finished", "config": {"method": "lora", "epochs": 3.0}, "base": "/models/llava-tiny",
        "examples": 9, "counts": {"records": 10, "examples": 9, "failed": 1, "truncated": 2}, "steps": 120,
        "tokens": 48_000, "seconds": 75.5, "final_loss": 0.4321, "world_size": 1})
    write_jsonl(root / "tuned" / "failures.jsonl", [{"id": "fig9/c1", "reason": "image not found"}])
    write_jsonl(root / "tuned" / "log.jsonl", [
        {"step": s, "epoch": s / 40, "loss": 2.0 / (1 + s / 20), "lr": 2e-4 * (1 - s / 121), "tokens": 400}
        for s in range(1, 121)])

    label_sets = {"organ": "vqa-rad", "question_type": "slake+vqa-rad"}
    write_json(root / "eval" / "vqa-base.json", vqa_result("vqa-rad", 60.0, 40.0, label_sets))
    write_json(root / "eval" / "vqa-tuned.json", vqa_result("vqa-rad", 70.0, 45.0, label_sets))
    write_jsonl(root / "eval" / "answers-base.jsonl", [{"question_id": str(i), "text": "yes"} for i in range(140)])
    write_jsonl(root / "eval" / "answers-tuned.jsonl", [{"question_id": str(i), "text": "no"} for i in range(140)])
    write_json(root / "eval" / "compare.json", {  # the shape of `vital eval compare --json`
        "compare": "vqa", "a": "answers-base", "mode": "default",
        "comparisons": [{"b": "answers-tuned", "n": 138, "missing": {"a": 0, "b": 2}, "metrics": {
            "closed_accuracy": {"a": 60.0, "b": 70.0, "diff": 10.0, "ci95": [3.75, 16.25], "p_value": 0.0123,
                                "test": "mcnemar-exact", "n": 80},
            "recall": {"a": 40.0, "b": 45.0, "diff": 5.0, "ci95": [-2.5, 12.5], "p_value": 0.21, "test": "sign-flip",
                       "n": 58},
            "bleu_3": {"a": 2.0, "b": 2.5, "diff": 0.5, "ci95": [-1.0, 2.0], "p_value": 0.6, "test": "sign-flip",
                       "n": 58},
            "open_accuracy": {"a": None, "b": None, "diff": None, "ci95": None, "p_value": None, "test": "none",
                              "n": 0},
        }}]})

    record = RunRecord(root / "run.json", "vital.toml", "sha256:" + "ab" * 32)
    for name, seconds, counts in (("figures", 1.5, {"figures": FIGURES}), ("sample", 3.0, {"picked": 6}),
                                  ("generate", 125.0, {"candidates": 27}), ("judge", 20.0, {"scores": 27}),
                                  ("annotate", 0.4, {}), ("selector", 30.0, {}), ("select", 1.0, {"kept": 9}),
                                  ("tune", 75.5, {}), ("eval", 12.0, {})):
        record.stages[name] = StageRecord("done", counts=counts, seconds=seconds, started="2025-01-01T10:00:00+00:00",
                                          finished="2025-01-01T10:05:00+00:00",
                                          versions={"vital": "0.1.0", "python": "3.11.9", "torch": None})
    record.stages["generate"].failed = 2
    record.stages["judge"].counts["cost_usd"] = 0.125
    record.save()
    return expected


def write_audit_log(path: Path) -> None:
    """The engine's audit log beside candidates.jsonl: 20 answered calls and 2 failed attempts that cost tokens."""
    from vital.llm.store import CallLog, CallRecord, connect

    connection = connect(path)
    log = CallLog(connection)
    for number in range(22):
        failed = number >= 20
        log.add(CallRecord("gpt-4o-mini", 1, "error" if failed else "ok", f"sha{number}", f"key{number}",
                           prompt_tokens=50_000 if failed else 100_000, completion_tokens=10_000 if failed else 20_000))
    connection.close()


def annotate(root: Path) -> float:
    """Two clinicians on every comparison (overlap 2): ana always prefers the lower-numbered candidate, ben does too
    except on his first item, where he says tie.  Returns Cohen's kappa of their labels, computed here."""
    from vital.annotate import AnnotationDB, add_user, load_corpus, next_task, submit_answer, task_view
    from vital.annotate.agreement import cohen_kappa

    database = AnnotationDB(root / "annotations.db")
    load_corpus(database, root / "figures.jsonl", root / "candidates.jsonl")
    labels: dict[str, dict[str, str]] = {"ana": {}, "ben": {}}
    for name in labels:
        user, _ = add_user(database, name)
        while (task_id := next_task(database, user, "compare", overlap=2)) is not None:
            shown = [c["id"] for c in task_view(database, user, task_id)["candidates"]]
            item = " vs ".join(sorted(shown))
            if name == "ben" and not labels["ben"]:
                submit_answer(database, user, task_id, {"choice": "tie"})
                labels[name][item] = "tie"
            else:
                submit_answer(database, user, task_id, {"choice": "A" if shown[0] == min(shown) else "B"})
                labels[name][item] = min(shown)
    database.close()
    items = sorted(labels["ana"])
    assert items == sorted(labels["ben"]) and len(items) == FIGURES * 3
    return cohen_kappa([labels["ana"][i] for i in items], [labels["ben"][i] for i in items])


class Page(HTMLParser):
    """What the tests look at in report.html: section ids, image sources, table cells, the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.cells: list[tuple[str, str]] = []  # (class, text)
        self._cell: list[str] | None = None
        self._cell_class = ""
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes["id"])
        elif tag == "img":
            self.images.append(attributes["src"])
        elif tag == "td":
            self._cell, self._cell_class = [], attributes.get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell_class, "".join(self._cell).strip()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def read_page(root: Path) -> Page:
    return Page((root / "report.html").read_text(encoding="utf-8"))


def copy_round(source: Path, target: Path, keep: tuple[str, ...]) -> Path:
    """Some of a round's files (names or folders) in a new folder; plots are slow to draw, so tests that look at
    one section give the report only the files of that section."""
    for name in keep:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        else:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / name)
    return target


@pytest.fixture(scope="module")
def full_round(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("round") / "my-round"
    expected = make_round(root)
    assert write_report(root) == root / "report.html"
    return root, expected


def test_every_section_is_drawn_with_its_plots(full_round) -> None:
    root, _ = full_round
    page = read_page(root)
    assert page.sections == ["run", "figures", "sample", "generate", "judge", "annotate", "selector", "select",
                             "tune", "eval", "examples"]
    assert len(SECTIONS) == len(page.sections)
    assert "could not be drawn" not in page.plain and "Not in this folder" not in page.plain
    plots = {Path(src).name for src in page.images if not Path(src).name.startswith("thumb-")}
    assert plots == {"corpus-domains.png", "sample-coverage.png", "generation-domains.png", "judge-scores.png",
                     "clinician-kappa.png", "selector-curves.png", "selector-sweep.png", "selection-domains.png",
                     "selection-scores.png", "tune-loss.png", "eval-vqa-rad-headline.png",
                     "eval-vqa-rad-by-organ.png", "eval-compare.png"}
    for src in page.images:
        assert src.startswith("report/") and (root / src).stat().st_size > 500
    assert {p.name for p in (root / "report").iterdir()} == {Path(src).name for src in page.images}


def test_counts_cost_and_run_summary(full_round) -> None:
    root, _ = full_round
    text = read_page(root).plain
    assert "figures.jsonl 9 figures" in text and "figures.failures.jsonl 1 records" in text
    assert "demos.jsonl 2 demonstrations" in text
    assert "sampled 6" in text and "clusters covered 3" in text and "of the corpus 67 %" in text
    assert "candidates.jsonl 27 candidates" in text and "candidates.failures.jsonl 2 records" in text
    assert "reply is not JSON 2" in text  # the failure reasons table
    # 18 candidates not served from the cache: 18 x (100K x $0.15 + 20K x $0.60) / 1M = $0.486
    assert "cost (est.) $0.49" in text and "tokens 3,240,000" in text and "cached replies" in text
    # the audit log counts every attempt: (2.1M x $0.15 + 0.42M x $0.60) / 1M = $0.567
    assert "candidates.llm.sqlite API calls: 2 error, 20 ok" in text and "API calls 22" in text
    assert "spent, every attempt (est.) $0.57" in text
    assert "candidates scored 27" in text and "judge rubric-judge" in text
    assert "pairwise verdicts 9" in text and "ties (incl. order flips) 3" in text
    assert "cost of the last run (est.) $0.12" in text  # the judge's, from run.json
    assert "generate done 2 min 05 s candidates 27 2" in text  # the stage row: status, duration, counts, failed
    assert "versions vital 0.1.0 · python 3.11.9" in text and "config hash abababababab" in text
    assert "run record as of 2025-01-01 10:05 UTC" in text


def test_clinician_agreement_from_the_annotation_database(full_round) -> None:
    root, expected = full_round
    page = read_page(root)
    text = page.plain
    assert "annotators with answers 2" in text and "comparisons answered 54" in text
    assert f"compare ana · ben 27 96 % {expected['kappa']:.2f}" in text
    assert "Krippendorff's α (compare)" in text
    assert "Agreement with the judge" in text  # scores.jsonl exists, so the judge is compared too


def test_selector_held_out_beside_the_judge_and_the_sweep(full_round) -> None:
    root, _ = full_round
    text = read_page(root).plain
    assert "agreement 0.833 0.667" in text and "AUC 0.900 0.700" in text
    assert "held out from clinicians" in text and "human weight 100" in text
    assert "1 0.500" in text and "100 0.833" in text  # the sweep's rows


def test_selection_per_domain_and_the_cut(full_round) -> None:
    root, _ = full_round
    text = read_page(root).plain
    # selected.json keeps c1 of every figure (selector score 2.0 + n/10) and one merged record
    assert "kept 9" in text and "of candidates 27" in text and "share kept 33 %" in text
    assert "score cut 2.000" in text and "ranked by selector-scores.jsonl" in text
    assert "merged from other datasets 1" in text
    assert "ct_scan 3 6 33 %" in text


def test_tune_loss_and_evaluation_intervals(full_round) -> None:
    root, _ = full_round
    page = read_page(root)
    text = page.plain
    assert "optimizer steps 120" in text and "final loss 0.4321" in text and "tuned/log.jsonl 120 steps" in text
    assert "method lora" in text and "base llava-tiny" in text and "set aside 1" in text and "truncated 2" in text
    assert "tuned/tune.json finished" in text and "tuned/failures.jsonl 1 records" in text
    assert "closed accuracy 80 60.0 [56.5, 63.5] 70.0 [66.5, 73.5]" in text
    assert "tuned vs base closed accuracy 60.0 70.0 10.0 [3.8, 16.2] 0.0123 mcnemar-exact 80" in text
    assert "tuned vs base bleu 3 2.0 2.5 0.5 [-1.0, 2.0] 0.6000 sign-flip 58" in text  # tabled, not plotted
    assert "tuned vs base open accuracy" not in text  # no open questions: nothing to compare
    assert "tuned vs base: questions compared 138" in text and "left out 2 without an answer in B" in text
    assert "eval/answers-base.jsonl 140 answers" in text


def test_breakdowns_show_n_grey_small_cells_and_never_plot_mixed_label_sets(full_round) -> None:
    root, _ = full_round
    page = read_page(root)
    head = [(cls, text) for cls, text in page.cells if text.startswith("9.0 [") or text.startswith("74.0 [")]
    assert head and all("muted" in cls for cls, _ in head)  # HEAD: 5 open / 7 closed questions, below 10
    chest = [(cls, text) for cls, text in page.cells if text.startswith("62.0 [")]
    assert chest and not any("muted" in cls for cls, _ in chest)  # CHEST: 40 closed questions
    assert ("num", "40") in page.cells
    # question_type's labels come from two benchmarks' vocabularies: tabled, not plotted
    assert "vqa-rad by question type (%, [95 % CI])" in page.plain
    assert not (root / "report" / "eval-vqa-rad-by-question-type.png").exists()
    assert "several vocabularies (slake+vqa-rad)" in page.plain


def test_minimum_n_comes_from_the_round_config(full_round, tmp_path: Path) -> None:
    root = copy_round(full_round[0], tmp_path / "round", ("eval",))
    (root / "vital.toml").write_text("[figures]\nsrc = 'corpus.csv'\n\n[eval]\nmin_n = 5\n", encoding="utf-8")
    write_report(root)
    page = read_page(root)
    head = [cls for cls, text in page.cells if text.startswith("74.0 [")]  # HEAD closed accuracy, n = 7
    assert head and not any("muted" in cls for cls in head)
    assert "fewer than 5 questions" in page.plain


def test_examples_show_the_kept_and_a_dropped_conversation_of_one_figure(full_round) -> None:
    root, _ = full_round
    html = (root / "report.html").read_text(encoding="utf-8")
    page = read_page(root)
    thumbnails = [src for src in page.images if Path(src).name.startswith("thumb-")]
    assert len(thumbnails) == 4  # fig0 (its image is DICOM), fig2, fig1: one per domain, then fig3
    with Image.open(root / thumbnails[0]) as thumbnail:
        assert max(thumbnail.size) <= 220
    text = page.plain
    assert "kept fig0/c1 · score 2.00" in text and "dropped fig0/c2 · score 0.50" in text
    assert "fig0/c0" not in text  # neither the kept nor the worst dropped one
    assert html.count('class="example"') == 4
    shown = [line.split("<code>")[1].split("</code>")[0] for line in html.splitlines() if line.startswith("      <h3>")]
    assert shown == ["fig0", "fig2", "fig1", "fig3"]


def test_data_is_escaped(full_round) -> None:
    root, _ = full_round
    html = (root / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<b>bold" not in html and "<i>about" not in html
    assert "&lt;script&gt;alert(&#34;caption&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;i&gt;about&lt;/i&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network


def test_an_empty_folder_says_what_is_absent(tmp_path: Path) -> None:
    write_report(tmp_path)
    page = read_page(tmp_path)
    text = page.plain
    assert len(page.sections) == len(SECTIONS) and page.images == []
    assert "Not in this folder: run.json" in text
    for name in ("figures.jsonl", "sample.jsonl", "candidates.jsonl", "scores.jsonl", "annotations.db",
                 "selector/metrics.json", "selected.json", "tuned/tune.json", "eval/vqa-base.json"):
        assert f"Not in this folder: {name}" in text or f", {name}" in text, name
    assert "could not be drawn" not in text


def test_a_folder_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    from vital.errors import InputError

    with pytest.raises(InputError, match="not a folder"):
        write_report(tmp_path / "no-such-round")
    assert not (tmp_path / "no-such-round").exists()


def test_an_annotation_database_server_is_not_contacted(tmp_path: Path) -> None:
    (tmp_path / "vital.toml").write_text("[annotate]\ndb = 'postgresql://vital@db.example/vital'\n", encoding="utf-8")
    write_report(tmp_path)
    text = read_page(tmp_path).plain
    assert "The annotation database is a server ([annotate] db)" in text and "could not be drawn" not in text


def test_a_partial_round_shows_what_exists_and_the_stage_status(full_round, tmp_path: Path) -> None:
    root = copy_round(full_round[0], tmp_path / "round", ("run.json", "figures.jsonl", "candidates.jsonl",
                                                           "scores.jsonl", "images"))
    record = RunRecord.load(root / "run.json")
    record.stages["tune"] = StageRecord("off")
    record.save()
    write_report(root)
    text = read_page(root).plain
    assert "Not in this folder: selected.json (run.json: select is done)." in text
    assert "Not in this folder: tuned/tune.json, tuned/log.jsonl (run.json: tune is off)." in text
    assert "Not in this folder: annotations.db" in text
    # without a selection the examples contrast the judge's best and worst candidate of a figure
    assert "highest score fig0/c0 · score 9.00" in text and "lowest score fig0/c2 · score 5.00" in text


def test_a_damaged_file_costs_only_its_section(full_round, tmp_path: Path, caplog) -> None:
    root = copy_round(full_round[0], tmp_path / "round", ("candidates.jsonl", "scores.jsonl"))
    lines = (root / "scores.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "scores.jsonl").write_text("".join(lines[:3] + ["{not json\n"] + lines[3:]), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="vital"):
        write_report(root)
    text = read_page(root).plain
    assert "This section could not be drawn: InputError" in text and "scores.jsonl:4: not valid JSON" in text
    assert "candidates.jsonl 27 candidates" in text  # the other sections are still there
    assert any("judge section could not be drawn" in record.getMessage() for record in caplog.records)


def test_a_second_report_of_unchanged_files_touches_nothing(full_round, tmp_path: Path) -> None:
    """Byte- and mtime-identical, even from another process (set orders differ between processes)."""
    import subprocess
    import sys

    root = copy_round(full_round[0], tmp_path / "round", ("run.json", "figures.jsonl", "sample.jsonl",
                                                           "candidates.jsonl", "images", "tuned", "eval"))
    write_report(root)
    (root / "report" / "from-an-earlier-round.png").write_bytes(b"old")
    files = [root / "report.html", *(p for p in (root / "report").iterdir() if p.name != "from-an-earlier-round.png")]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                    "from vital.pipeline.report import write_report; write_report(Path(sys.argv[1]))", str(root)],
                   check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert not (root / "report" / "from-an-earlier-round.png").exists()


def test_results_written_by_eval_vqa_are_read(tmp_path: Path) -> None:
    """The report reads what `vital eval vqa` writes today: two benchmarks in one flat ground truth."""
    from vital.evaluate.compare import CompareConfig, eval_compare
    from vital.evaluate.vqa import VqaConfig, eval_vqa

    root = tmp_path / "round"
    questions, base, tuned = [], {}, {}
    for number in range(40):
        benchmark, organ = (("vqa-rad", "CHEST"), ("slake", "Lung"))[number % 2]
        qid = f"q{number}"
        questions.append({"question_id": qid, "question": "Is it normal?", "answer": "yes", "answer_type": "closed",
                          "benchmark": benchmark, "organ": organ})
        base[qid], tuned[qid] = ("yes" if number % 4 == 0 else "no"), ("yes" if number % 4 != 3 else "no")
    write_jsonl(tmp_path / "gt.jsonl", questions)
    for name, answers in (("base", base), ("tuned", tuned)):
        result = eval_vqa(tmp_path / "gt.jsonl", answers, VqaConfig(bootstrap=200))
        write_json(root / "eval" / f"vqa-{name}.json", result.to_json())
        write_jsonl(root / "eval" / f"answers-{name}.jsonl",
                    [{"question_id": qid, "text": text} for qid, text in answers.items()])
    compared = eval_compare(tmp_path / "gt.jsonl", root / "eval" / "answers-base.jsonl",
                            root / "eval" / "answers-tuned.jsonl", CompareConfig(bootstrap=200))
    write_json(root / "eval" / "compare.json", compared.to_json())
    write_report(root)
    page = read_page(root)
    text = page.plain
    assert "could not be drawn" not in text
    assert "closed accuracy 40 25.0 [" in text and "] 75.0 [" in text  # 10 and 30 of 40 right
    names = {Path(src).name for src in page.images}
    assert any("region" in name for name in names)  # body regions are one shared label set: plotted
    assert not any("organ" in name for name in names)  # CHEST and Lung are two vocabularies: not on one axis
    assert "(slake+vqa-rad)" in text
    # 30 right for tuned, 10 for base: 20 questions only the tuned model gets right, none the other way round
    assert "tuned vs base closed accuracy 25.0 75.0 50.0 [" in text and "] < 0.0001 mcnemar-exact 40" in text
    assert "eval-compare.png" in names


# --- in a browser ---------------------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
def test_the_report_in_chromium_loads_every_image_without_errors(full_round, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (`make browser` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    root, _ = full_round
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                   "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: message.type == "error" and problems.append(message.text))
            page.on("request", lambda request: requests.append(request.url))
            page.goto((root / "report.html").as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, "
                                   "i.naturalWidth])")
            width = page.evaluate("document.documentElement.scrollWidth")
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
            page.emulate_media(media="print")
            page.pdf(path=str(tmp_path / "report.pdf"))  # printable: the print stylesheet lays it out
        finally:
            browser.close()
    assert problems == []
    assert len(images) >= 15 and all(complete and natural > 0 for _, complete, natural in images), images
    assert all(url.startswith("file://") for url in requests)  # nothing from the network
    assert width <= 1280  # nothing wider than the window at 1280 px
    assert screenshot.stat().st_size > 50_000 and (tmp_path / "report.pdf").stat().st_size > 50_000
    artifacts = os.environ.get("VITAL_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / "report.png")
