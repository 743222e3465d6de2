"""Selection policies (which candidates are kept), the LLaVA export and its report, merging, importing LLaVA
data as candidates, and the exit statuses of ``vital select``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.conversation import IMAGE_TOKEN
from vital.errors import InputError
from vital.jsonl import failures_path, read_records
from vital.records import Candidate, Figure, Score, Turn
from vital.selection import (
    SelectConfig,
    export_llava,
    import_candidates,
    llava_record,
    select,
    select_candidates,
    write_report,
)


def turns(*pairs: tuple[str, str]) -> list[dict]:
    out = []
    for question, answer in pairs:
        out += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return out


def candidate(cid: str, figure: str, image: Path | None, answer: str | None = None) -> Candidate:
    exchanges = (
        [("What is shown?", answer)]
        if answer
        else [
            ("What is shown?", f"Answer number {cid} about figure {figure}, with its own distinct words {cid}."),
            ("Anything else?", f"Nothing more for {cid}."),
        ]
    )
    return Candidate.model_validate(
        {"id": cid, "figure_id": figure, "image": str(image) if image else None, "conversations": turns(*exchanges)}
    )


@pytest.fixture
def pool(tmp_path):
    """12 figures in 3 domains (f0-f5 ct, f6-f9 mri, f10-f11 histology), 3 candidates each (fI-0, fI-1, fI-2);
    scores fall with the position, so f0-0 is the best and f11-2 the worst."""
    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(image)
    domains = ["ct_scan"] * 6 + ["mri"] * 4 + ["histology"] * 2
    figures = {
        f"f{i}": Figure(id=f"f{i}", image=str(image), caption=f"figure {i}", domains=[domain])
        for i, domain in enumerate(domains)
    }
    candidates = [candidate(f"f{i}-{k}", f"f{i}", image) for i in range(12) for k in range(3)]
    scores = {c.id: 100.0 - n for n, c in enumerate(candidates)}
    return candidates, figures, scores


def kept_ids(selection) -> list[str]:
    return [d.candidate.id for d in selection.kept]


def ids(*figure_candidates: str) -> list[str]:
    """``ids("f0:01", "f6:0")`` -> ``["f0-0", "f0-1", "f6-0"]``."""
    return [f"{figure}-{k}" for spec in figure_candidates for figure, ks in [spec.split(":")] for k in ks]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r if isinstance(r, dict) else r.to_json_dict()) + "\n" for r in records))
    return path


# -- the LLaVA record --------------------------------------------------------------------------------------
def test_llava_record_has_the_image_token_once_at_the_start_of_the_first_human_turn(tmp_path):
    record = llava_record(Candidate.model_validate({
        "id": "c", "figure_id": "f", "image": "a.png",
        "conversations": turns(("Describe <image> this.", "A <image> CT."), ("More?", "No.")),
    }))
    assert record == {"id": "c", "image": "a.png", "conversations": [
        {"from": "human", "value": f"{IMAGE_TOKEN}\nDescribe  this."}, {"from": "gpt", "value": "A  CT."},
        {"from": "human", "value": "More?"}, {"from": "gpt", "value": "No."}]}


@pytest.mark.parametrize(
    "bad, problem",
    [
        ([("gpt", "hello"), ("human", "q")], "expected 'human'"),
        ([("human", "q"), ("human", "q2")], "expected 'gpt'"),
        ([("human", "q"), ("gpt", "a"), ("human", "q2")], "no answer"),
        ([("human", "<image>"), ("gpt", "a")], "empty"),
    ],
)
def test_a_conversation_llava_cannot_use_is_set_aside_with_the_reason(pool, bad, problem):
    candidates, figures, scores = pool
    candidates[0].conversations = [Turn.model_validate({"from": s, "value": v}) for s, v in bad]
    selection = select_candidates(candidates, scores, SelectConfig(top_k=2), figures)
    assert kept_ids(selection) == ["f0-1", "f0-2"]  # the best candidate gave up its place
    (unusable,) = selection.unexportable
    assert unusable.candidate.id == "f0-0" and problem in unusable.unexportable and not unusable.kept


# -- policies ------------------------------------------------------------------------------------------------
def test_top_fraction_and_top_k_keep_the_best_scores(pool):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_fraction=0.25), figures)
    assert kept_ids(selection) == [c.id for c in candidates[:9]]  # a quarter of 36
    assert selection.cut == scores["f2-2"] and selection.budget == 9
    selection = select_candidates(candidates, scores, SelectConfig(top_k=4), figures)
    assert kept_ids(selection) == ids("f0:012", "f1:0")
    assert {d.reason for d in selection.decisions if not d.kept} == {"below the cut"}
    assert kept_ids(select_candidates(candidates, scores, None, figures)) == [c.id for c in candidates]


def test_per_figure_cap_and_min_score(pool):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_k=10, per_figure=1), figures)
    assert kept_ids(selection) == [f"f{i}-0" for i in range(10)]
    reasons = {d.candidate.id: d.reason for d in selection.decisions}
    assert reasons["f0-1"] == "per-figure cap" and reasons["f11-0"] == "below the cut"
    selection = select_candidates(candidates, scores, SelectConfig(min_score=95.5), figures)
    assert kept_ids(selection) == ids("f0:012", "f1:01")  # scores 100 to 96
    assert {d.candidate.id: d.reason for d in selection.decisions}["f1-2"] == "below the minimum score"


def test_domain_quotas_by_count_and_share(pool):
    candidates, figures, scores = pool
    config = SelectConfig(top_k=10, domain_quota=["ct_scan=2", "mri=0.3"])
    assert config.domain_quotas == {"ct_scan": 2.0, "mri": 0.3}
    selection = select_candidates(candidates, scores, config, figures)
    # ct_scan: 2 (a count); mri: 0.3 of the budget of 10 = 3; histology has no quota and fills the rest
    assert kept_ids(selection) == ids("f0:01", "f6:012", "f10:012", "f11:01")
    assert {d.candidate.id: d.reason for d in selection.decisions}["f0-2"] == "domain quota"
    counts = selection.per_domain()
    assert (counts["ct_scan"]["kept"], counts["mri"]["kept"], counts["histology"]["kept"]) == (2, 3, 5)


def test_balanced_domains_share_the_budget_and_pass_on_what_a_small_domain_cannot_fill(pool):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_k=12, balance_domains=True), figures)
    assert kept_ids(selection) == ids("f0:012", "f1:0", "f6:012", "f7:0", "f10:012", "f11:0")
    selection = select_candidates(candidates, scores, SelectConfig(top_k=24, balance_domains=True), figures)
    # shares of 8: histology has only 6, and its 2 unused places go to the best of the rest (ct_scan's f2-2, f3-0)
    assert kept_ids(selection) == ids("f0:012", "f1:012", "f2:012", "f3:0", "f6:012", "f7:012", "f8:01",
                                      "f10:012", "f11:012")


def test_near_duplicate_conversations_of_a_figure_are_dropped(pool):
    _, figures, _ = pool
    image = Path(figures["f0"].image)
    text = "The axial CT shows a large hypodense lesion in the right lobe of the liver with rim enhancement."
    candidates = [
        candidate("a", "f0", image, text),
        candidate("b", "f0", image, text.replace("large", "big")),
        candidate("c", "f1", image, text),  # the same words about another figure are not a duplicate
        candidate("d", "f0", image, "A completely different answer about the spleen and its vessels."),
    ]
    scores = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    selection = select_candidates(candidates, scores, SelectConfig(), figures)
    assert kept_ids(selection) == ["a", "c", "d"]
    assert {d.candidate.id: d.reason for d in selection.decisions}["b"] == "near-duplicate"
    exact_only = select_candidates(candidates, scores, SelectConfig(near_duplicate=1.0), figures)
    assert kept_ids(exact_only) == ["a", "b", "c", "d"]


def test_unscored_candidates_are_never_kept(pool):
    candidates, figures, scores = pool
    del scores["f0-0"]
    selection = select_candidates(candidates, scores, SelectConfig(top_k=2), figures)
    assert kept_ids(selection) == ["f0-1", "f0-2"]
    assert {d.candidate.id: d.reason for d in selection.decisions}["f0-0"] == "no score"


def test_missing_images_and_unusable_conversations_never_take_a_place(pool, tmp_path):
    candidates, figures, scores = pool
    candidates[0].image = str(tmp_path / "gone.png")
    candidates[1].conversations = candidates[1].conversations[:3]  # an unanswered question
    selection = select_candidates(candidates, scores, SelectConfig(top_k=5), figures)
    assert kept_ids(selection) == ids("f0:2", "f1:012", "f2:0")
    out = tmp_path / "out" / "selected.json"
    export = export_llava(selection, out)
    assert (export.records, export.failed, export.failures) == (5, 2, failures_path(out))
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert {f["id"]: f["reason"] for f in failures} == {
        "f0-0": "image file not found",
        "f0-1": "the last question has no answer",
    }
    lenient = select_candidates(candidates, scores, SelectConfig(top_k=5, keep_missing_images=True), figures)
    assert kept_ids(lenient) == ids("f0:02", "f1:012")


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"top_k": 4, "top_fraction": 0.5}, "top_fraction"),
        ({"top_fraction": 1.5}, "top_fraction"),
        ({"top_k": -1}, "top_k"),
        ({"per_figure": 0}, "per_figure"),
        ({"near_duplicate": 0}, "near_duplicate"),
        ({"domain_quota": ["xray=3"]}, "domain_quota"),
        ({"domain_quota": ["ct_scan"]}, "domain_quota"),
        ({"domain_quota": ["ct_scan=-1"]}, "domain_quota"),
        ({"source": "judge"}, "source"),
    ],
)
def test_config_errors_name_the_field(settings, field):
    with pytest.raises(InputError) as error:
        SelectConfig(**settings)
    assert error.value.field == field


# -- export ----------------------------------------------------------------------------------------------------
def test_export_is_llava_data(pool, tmp_path):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_fraction=0.5), figures)
    out = tmp_path / "out" / "selected.json"
    export = export_llava(selection, out, image_root=tmp_path)
    data = json.loads(out.read_text())
    assert [record["id"] for record in data] == [c.id for c in candidates[:18]]
    for record in data:
        assert set(record) == {"id", "image", "conversations"}
        assert record["image"] == "img.png"  # relative to --image-root
        speakers = [t["from"] for t in record["conversations"]]
        assert speakers == ["human", "gpt"] * (len(speakers) // 2)
        assert record["conversations"][0]["value"].startswith(IMAGE_TOKEN + "\n")
        assert sum(t["value"].count(IMAGE_TOKEN) for t in record["conversations"]) == 1
    assert not list(out.parent.glob(".selected.json.*"))  # written through a temporary file, nothing left over
    assert not failures_path(out).exists() and export.failures is None and export.failed == 0


def test_merging_llava_datasets_removes_duplicates(pool, tmp_path):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_k=3), figures)
    first = tmp_path / "first.json"
    export_llava(selection, first)
    existing = json.loads(first.read_text())
    other = [
        {**existing[0], "id": "copy-with-new-id"},  # same image and conversation: a duplicate
        {"id": existing[1]["id"], "image": "other.jpg", "conversations": turns(("Q?", "A."))},
        {"id": "new", "image": "new.jpg", "conversations": turns(("Q2? <image>", "A2."))},
    ]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(other))
    out = tmp_path / "merged.json"
    export = export_llava(selection, out, merge=[extra, extra])
    data = json.loads(out.read_text())
    assert (export.records, export.merged, export.merge_duplicates) == (3, 2, 4)  # one copy, then all three again
    assert [record["id"] for record in data] == ["f0-0", "f0-1", "f0-2", "extra:f0-1", "new"]  # a taken id is renamed
    assert data[4]["conversations"][0]["value"] == "<image>\nQ2?"


def test_merged_image_paths_are_rewritten_from_their_own_folder(pool, tmp_path):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_k=1), figures)
    other_images = tmp_path / "llava-med" / "images"
    other_images.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other_images / "pmc1.jpg")
    extra = tmp_path / "llava-med" / "instruct.json"
    extra.write_text(json.dumps([{"id": "m1", "image": "pmc1.jpg", "conversations": turns(("Q?", "A."))}]))
    out = tmp_path / "out" / "selected.json"
    export_llava(selection, out, merge=[extra], image_root=tmp_path, merge_images=other_images)
    assert json.loads(out.read_text())[-1]["image"] == "llava-med/images/pmc1.jpg"  # relative to --image-root
    export_llava(selection, out, merge=[extra])
    assert json.loads(out.read_text())[-1]["image"] == "pmc1.jpg"  # kept as written without --merge-images


def test_dicom_images_are_exported_as_png_for_llava(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    figures = {"ct": Figure(id="ct", image=str(dicom), caption="Axial CT.", domains=["ct_scan"])}
    selection = select_candidates([candidate("ct-0", "ct", dicom)], {"ct-0": 1.0}, SelectConfig(), figures)
    out = tmp_path / "selected.json"
    export_llava(selection, out)
    record = json.loads(out.read_text())[0]
    assert record["image"].startswith("selected.images/") and record["image"].endswith(".png")
    with Image.open(tmp_path / record["image"]) as image:
        assert image.size == (128, 128)


def test_report_has_counts_histogram_and_examples(pool, tmp_path):
    candidates, figures, scores = pool
    selection = select_candidates(candidates, scores, SelectConfig(top_fraction=0.4, per_figure=2), figures)
    export = export_llava(selection, tmp_path / "selected.json")
    report = write_report(selection, export)
    text = report.read_text()
    assert report.name == "selected.report.md" and (tmp_path / "selected.scores.png").stat().st_size > 1000
    assert "![score histogram](selected.scores.png)" in text
    # 14 kept (0.4 of 36), two per figure from f0 on: f0-f5 (ct_scan) give 12, f6 (mri) 2
    assert "Kept **14** of 36 candidates" in text
    assert "| ct_scan | 12 | 6 |" in text and "| mri | 2 | 10 |" in text and "| histology | 0 | 6 |" in text
    assert "| per-figure cap | 6 |" in text and "| below the cut | 16 |" in text  # the walk stops at f6-1
    best = text.split("## Kept, best first\n")[1].splitlines()[0]
    assert best.startswith("- `f0-0` (ct_scan, score 100.000): Question: What is shown? Answer: Answer number f0-0")


# -- select(): the whole stage ------------------------------------------------------------------------------
@pytest.fixture
def files(pool, tmp_path):
    """The pool as files: candidates.jsonl, figures.jsonl, and scores.jsonl with model and selector scores
    that disagree (the selector prefers the last candidates)."""
    candidates, figures, scores = pool
    scores_file = write_jsonl(tmp_path / "scores.jsonl", [
        *(Score(candidate_id=cid, score=value, source="model") for cid, value in scores.items()),
        *(Score(candidate_id=cid, score=-value, source="selector") for cid, value in scores.items()),
    ])
    return (write_jsonl(tmp_path / "candidates.jsonl", candidates),
            write_jsonl(tmp_path / "figures.jsonl", figures.values()), scores_file)


def test_select_reads_selects_exports_and_reports(files, tmp_path):
    candidates, figures, scores = files
    out = tmp_path / "selected.json"
    result = select(candidates, scores, out, SelectConfig(top_k=3), figures=figures)
    assert result.source == "selector"  # auto: selector scores when there are any
    assert [r["id"] for r in json.loads(out.read_text())] == ["f11-0", "f11-1", "f11-2"]
    assert (result.out, result.report, result.kept, result.considered, result.budget) == (
        out, tmp_path / "selected.report.md", 3, 36, 3)
    assert (result.failed, result.failures, result.cut) == (0, None, -67.0)
    assert result.domains["histology"]["kept"] == 3 and result.domains["ct_scan"]["kept"] == 0
    by_model = select(candidates, scores, out, SelectConfig(top_k=3, source="model"), figures=figures)
    assert by_model.source == "model"
    assert [r["id"] for r in json.loads(out.read_text())] == ["f0-0", "f0-1", "f0-2"]


def test_select_takes_records_as_well_as_files(pool, tmp_path):
    candidates, figures, scores = pool
    result = select(candidates, scores, tmp_path / "selected.json", SelectConfig(top_k=2), figures=figures)
    assert result.source is None and result.kept == 2  # a mapping of scores is taken as it is
    records = [Score(candidate_id=cid, score=-value, source="model") for cid, value in scores.items()]
    result = select(candidates, records, tmp_path / "selected.json", SelectConfig(top_k=2),
                    figures=list(figures.values()))
    assert result.source == "model" and result.kept == 2
    assert [r["id"] for r in json.loads((tmp_path / "selected.json").read_text())] == ["f11-1", "f11-2"]
    with pytest.raises(InputError, match="no selector scores given"):
        select(candidates, records, tmp_path / "selected.json", SelectConfig(source="selector"))
    with pytest.raises(InputError, match="no candidates given"):
        select([], scores, tmp_path / "selected.json")


def test_select_counts_failures_and_merges(files, pool, tmp_path):
    candidates, figures, scores = files
    lines = candidates.read_text().splitlines()
    lines[-1] = lines[-1].replace('"image": "', '"image": "gone-')  # the selector's favourite has no image
    candidates.write_text("\n".join(lines) + "\n")
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{"id": "m", "image": "x.jpg", "conversations": turns(("Q?", "A."))}]))
    out = tmp_path / "selected.json"
    result = select(candidates, scores, out, SelectConfig(top_k=2, merge=[extra]), figures=figures)
    assert (result.kept, result.failed, result.failures, result.merged) == (2, 1, failures_path(out), 1)
    assert [r["id"] for r in json.loads(out.read_text())] == ["f11-0", "f11-1", "m"]
    assert [json.loads(line)["id"] for line in failures_path(out).read_text().splitlines()] == ["f11-2"]


def test_empty_or_missing_inputs_are_refused_before_anything_is_written(files, tmp_path):
    candidates, figures, scores = files
    out = tmp_path / "selected.json"
    select(candidates, scores, out, SelectConfig(top_k=2), figures=figures)
    before = {path: path.read_bytes() for path in tmp_path.glob("selected*") if path.is_file()}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        ((empty, scores), empty, "has no records"),
        ((candidates, empty), empty, "has no records"),
        ((tmp_path, scores), tmp_path, "is a directory"),
        ((candidates, tmp_path), tmp_path, "is a directory"),
        ((tmp_path / "nope.jsonl", scores), tmp_path / "nope.jsonl", "file not found"),
    ]
    for (candidates_in, scores_in), named, problem in cases:
        with pytest.raises(InputError) as error:
            select(candidates_in, scores_in, out, SelectConfig(top_k=2), figures=figures)
        assert error.value.path == str(named) and problem in error.value.problem
    with pytest.raises(InputError, match="no selector scores"):
        select(candidates, write_jsonl(tmp_path / "model.jsonl", [Score(candidate_id="f0-0", score=1.0,
                                                                          source="model")]),
               out, SelectConfig(source="selector"), figures=figures)
    with pytest.raises(InputError, match="file not found"):
        select(candidates, scores, out, SelectConfig(merge=[tmp_path / "gone.json"]), figures=figures)
    assert {path: path.read_bytes() for path in tmp_path.glob("selected*") if path.is_file()} == before


# -- import ----------------------------------------------------------------------------------------------------
def test_import_llava_files_as_candidates(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    source = tmp_path / "llava_med.json"
    source.write_text(json.dumps([
        {"id": "1", "image": "a.jpg", "conversations": turns(("<image>\nWhat?", "A CT."))},
        {"id": "1", "image": "b.jpg", "conversations": turns(("Where?", "Liver."), ("Size?", "3 cm."))},
        {"id": "2", "pair_id": "p2", "conversations": turns(("What?", "An MRI."))},
    ]))
    out = tmp_path / "candidates.jsonl"
    result = import_candidates([source], out, images=images)
    assert (result.out, result.candidates, result.images_found, result.images_missing, result.renamed_ids) == (
        out, 3, 1, 2, 1)
    records = list(read_records(out, Candidate))
    assert [(r.id, r.figure_id, r.image) for r in records] == [
        ("1", "a.jpg", "imgs/a.jpg"),  # relative to the output
        ("llava_med:1:1", "b.jpg", "imgs/b.jpg"),  # a repeated id is made unique, naming the source and line
        ("2", "p2", None),
    ]
    assert records[1].conversations[3].value == "3 cm." and records[0].generator["backend"] == "import"
    assert result.figures == 0 and result.figures_out is None


def test_bad_or_empty_llava_files_name_file_line_and_field(tmp_path):
    source = tmp_path / "bad.jsonl"
    good = {"id": "x", "image": "a.jpg", "conversations": turns(("Q", "A"))}
    bad = {"id": "y", "image": "a.jpg", "conversations": [{"from": "robot", "value": "hi"}]}
    write_jsonl(source, [good, bad])
    with pytest.raises(InputError) as error:
        import_candidates([source], tmp_path / "out.jsonl")
    assert error.value.line == 2 and error.value.field.startswith("conversations.0")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    for path, problem in [(empty, "no records"), (tmp_path, "is a directory"), (tmp_path / "x.json", "not found")]:
        with pytest.raises(InputError, match=problem) as error:
            import_candidates([path], tmp_path / "out.jsonl")
        assert error.value.path == str(path)


def test_biomed_vital_demonstrations_import_with_captions_and_missing_images(shared_data, tmp_path):
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    out, figures_out = tmp_path / "candidates.jsonl", tmp_path / "figures.jsonl"
    result = import_candidates([source], out, figures_out=figures_out)
    assert result.candidates == 58 and result.images_missing == 58 and result.figures > 0
    assert result.figures_out == figures_out
    figures = {f.id: f for f in read_records(figures_out, Figure)}
    for record in read_records(out, Candidate):
        assert record.figure_id in figures
    assert sum("ct_scan" in f.domains for f in figures.values()) == 28


# -- the command line --------------------------------------------------------------------------------------------
def vital(*args):
    """The real command, so that exit status 2 (set by ``vital.cli.main``) is what a user sees."""
    return subprocess.run([sys.executable, "-m", "vital", *map(str, args)], capture_output=True, text=True)


def test_cli_select_and_import_end_to_end(tmp_path, shared_data):
    from vital.cli import app

    runner = CliRunner()
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    imported = runner.invoke(app, ["candidates", "import", str(source), "--out", str(tmp_path / "c.jsonl"),
                                   "--figures-out", str(tmp_path / "f.jsonl")])
    assert imported.exit_code == 0, imported.output
    assert "58 candidates" in imported.output and "0 with an image file" in imported.output
    candidates = list(read_records(tmp_path / "c.jsonl", Candidate))
    scores = write_jsonl(tmp_path / "scores.jsonl", [
        Score(candidate_id=c.id, score=float(n % 10), source="model") for n, c in enumerate(candidates)])
    out = tmp_path / "selected.json"
    args = ["select", str(tmp_path / "c.jsonl"), "--scores", str(scores), "--figures", str(tmp_path / "f.jsonl"),
            "--out", str(out), "--top-fraction", "0.5"]
    strict = runner.invoke(app, args)
    # no image file is here: nothing can be exported, every candidate is a failure, and the exit status says so
    assert strict.exit_code == 1, strict.output
    assert "kept 0 of 58 candidates by model score" in strict.output and json.loads(out.read_text()) == []
    assert "58 candidates cannot be exported" in strict.output
    assert len(failures_path(out).read_text().splitlines()) == 58
    lenient = runner.invoke(app, [*args, "--keep-missing-images", "--balance-domains", "--per-figure", "1"])
    assert len(json.loads(out.read_text())) == 29 and (tmp_path / "selected.report.md").is_file()
    # two released demonstrations have two gpt turns in a row: LLaVA cannot use them, so they are failures
    assert lenient.exit_code == 1, lenient.output
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert sorted(f["id"] for f in failures) == ["34", "49"]
    assert all("expected 'human'" in f["reason"] for f in failures)


def test_cli_select_exits_1_when_some_candidates_cannot_be_exported(files, tmp_path):
    from vital.cli import app

    candidates, figures, scores = files
    lines = candidates.read_text().splitlines()
    lines[0] = lines[0].replace('"image": "', '"image": "gone-')
    candidates.write_text("\n".join(lines) + "\n")
    out = tmp_path / "selected.json"
    result = CliRunner().invoke(app, ["select", str(candidates), "--scores", str(scores), "--figures", str(figures),
                                      "--out", str(out), "--source", "model", "--top-k", "2"])
    assert result.exit_code == 1, result.output
    assert [r["id"] for r in json.loads(out.read_text())] == ["f0-1", "f0-2"]
    assert "1 candidates failed" in result.output and str(failures_path(out)) in result.output


def test_cli_select_bad_input_exits_2_with_one_line_and_keeps_the_export(files, tmp_path):
    candidates, figures, scores = files
    out = tmp_path / "selected.json"
    out.write_text('[{"id": "earlier"}]\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    common = ["--figures", figures, "--out", out]
    for args, expected in [
        ([empty, "--scores", scores], f"error: {empty}: has no records"),
        ([candidates, "--scores", tmp_path], f"error: {tmp_path}: is a directory"),
        ([candidates, "--scores", scores, "--domain-quota", "xray=3"], "error: field '--domain-quota': unknown"),
        ([candidates, "--scores", scores, "--top-k", "2", "--top-fraction", "0.5"],
         "error: field '--top-fraction': give --top-fraction or --top-k, not both"),
    ]:
        result = vital("select", *args, *common)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr
        assert out.read_text() == '[{"id": "earlier"}]\n'
