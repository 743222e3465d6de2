"""Selection policies, the LLaVA export and its report, merging, and importing LLaVA data as candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vital.errors import InputError
from vital.jsonl import failures_path, read_records
from vital.records import Candidate, Figure, Turn
from vital.selection import (
    IMAGE_TOKEN,
    SelectionPolicy,
    export_llava,
    import_llava,
    llava_conversations,
    read_llava,
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
            (
                "What is shown?",
                f"Answer number {cid} about figure {figure}, with its own distinct words {cid}.",
            ),
            ("Anything else?", f"Nothing more for {cid}."),
        ]
    )
    return Candidate.model_validate(
        {
            "id": cid,
            "figure_id": figure,
            "image": str(image) if image else None,
            "conversations": turns(*exchanges),
        }
    )


@pytest.fixture
def pool(tmp_path):
    """12 figures in 3 domains (6 ct, 4 mri, 2 histology), 3 candidates each; scores fall with the index."""
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


def kept_ids(result) -> list[str]:
    return [d.candidate.id for d in result.kept]


def test_llava_conversation_has_image_token_once_in_the_first_human_turn():
    raw = [
        Turn.model_validate(t) for t in turns(("Describe <image> this.", "A <image> CT."), ("More?", "No."))
    ]
    converted = llava_conversations(raw)
    assert [t["from"] for t in converted] == ["human", "gpt", "human", "gpt"]
    assert converted[0]["value"] == f"{IMAGE_TOKEN}\nDescribe  this."
    assert sum(t["value"].count(IMAGE_TOKEN) for t in converted) == 1


@pytest.mark.parametrize(
    "bad, problem",
    [
        ([("gpt", "hello"), ("human", "q")], "expected 'human'"),
        ([("human", "q"), ("human", "q2")], "expected 'gpt'"),
        ([("human", "q"), ("gpt", "a"), ("human", "q2")], "no answer"),
        ([("human", "<image>"), ("gpt", "a")], "empty"),
    ],
)
def test_conversations_llava_cannot_use_are_refused(bad, problem):
    with pytest.raises(ValueError, match=problem):
        llava_conversations([Turn.model_validate({"from": s, "value": v}) for s, v in bad])


def test_top_fraction_and_top_k(pool):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_fraction=0.25), figures)
    assert kept_ids(result) == [c.id for c in candidates[:9]]
    assert result.cut == scores[candidates[8].id]
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=4), figures)
    assert len(result.kept) == 4
    with pytest.raises(InputError):
        select_candidates(candidates, scores, SelectionPolicy(top_k=4, top_fraction=0.5), figures)


def test_per_figure_cap_and_min_score(pool):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=10, per_figure=1), figures)
    assert kept_ids(result) == [f"f{i}-0" for i in range(10)]
    reasons = {d.candidate.id: d.reason for d in result.decisions}
    assert reasons["f0-1"] == "per-figure cap" and reasons["f11-0"] == "below the cut"
    result = select_candidates(candidates, scores, SelectionPolicy(min_score=95.5), figures)
    assert len(result.kept) == 5 and reasons["f0-0"] == ""


def test_domain_quotas_by_count_and_share(pool):
    candidates, figures, scores = pool
    policy = SelectionPolicy(top_k=10, domain_quotas={"ct_scan": 2, "mri": 0.3})
    result = select_candidates(candidates, scores, policy, figures)
    domains = [d.domain for d in result.kept]
    assert domains.count("ct_scan") == 2 and domains.count("mri") == 3 and domains.count("histology") == 5
    assert len(result.kept) == 10


def test_balanced_domains_share_the_budget_and_pass_on_what_a_small_domain_cannot_fill(pool):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=12, balance_domains=True), figures)
    domains = [d.domain for d in result.kept]
    assert domains.count("ct_scan") == 4 and domains.count("mri") == 4 and domains.count("histology") == 4
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=24, balance_domains=True), figures)
    domains = [d.domain for d in result.kept]
    assert domains.count("histology") == 6  # all it has; its unused share went to the best of the others
    assert len(result.kept) == 24


def test_near_duplicate_conversations_of_a_figure_are_dropped(pool, tmp_path):
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
    result = select_candidates(candidates, scores, SelectionPolicy(), figures)
    assert kept_ids(result) == ["a", "c", "d"]
    assert {d.candidate.id: d.reason for d in result.decisions}["b"] == "near-duplicate"
    exact_only = select_candidates(candidates, scores, SelectionPolicy(near_duplicate=1.0), figures)
    assert len(exact_only.kept) == 4


def test_missing_images_and_unusable_conversations_never_take_a_place(pool, tmp_path):
    candidates, figures, scores = pool
    candidates[0].image = str(tmp_path / "gone.png")
    candidates[1].conversations = candidates[1].conversations[:3]  # an unanswered question
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=5), figures)
    assert len(result.kept) == 5 and kept_ids(result)[0] == candidates[2].id
    assert len(result.unexportable) == 2
    out = tmp_path / "out" / "selected.json"
    export_llava(result, out)
    failures = [json.loads(line) for line in failures_path(out).read_text().splitlines()]
    assert {f["id"]: f["reason"] for f in failures} == {
        candidates[0].id: "image file not found",
        candidates[1].id: "the last question has no answer",
    }
    lenient = select_candidates(candidates, scores, SelectionPolicy(top_k=5, require_image=False), figures)
    assert kept_ids(lenient)[0] == candidates[0].id


def test_export_is_llava_data(pool, tmp_path):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_fraction=0.5), figures)
    out = tmp_path / "out" / "selected.json"
    export_llava(result, out, image_root=tmp_path)
    data = json.loads(out.read_text())
    assert isinstance(data, list) and len(data) == 18
    assert len({record["id"] for record in data}) == 18
    for record in data:
        assert set(record) == {"id", "image", "conversations"}
        assert record["image"] == "img.png"  # relative to --image-root
        speakers = [t["from"] for t in record["conversations"]]
        assert speakers == ["human", "gpt"] * (len(speakers) // 2)
        assert record["conversations"][0]["value"].startswith(IMAGE_TOKEN + "\n")
        assert sum(t["value"].count(IMAGE_TOKEN) for t in record["conversations"]) == 1
    assert not list(
        out.parent.glob(".selected.json.*")
    )  # written through a temporary file, nothing left over
    assert not failures_path(out).exists()


def test_merging_llava_datasets_removes_duplicates(pool, tmp_path):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=3), figures)
    first = tmp_path / "first.json"
    export_llava(result, first)
    existing = json.loads(first.read_text())
    other = [
        {**existing[0], "id": "copy-with-new-id"},  # same image and conversation: a duplicate
        {
            "id": existing[1]["id"],
            "image": "other.jpg",
            "conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}],
        },
        {
            "id": "new",
            "image": "new.jpg",
            "conversations": [{"from": "human", "value": "Q2? <image>"}, {"from": "gpt", "value": "A2."}],
        },
    ]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(other))
    out = tmp_path / "merged.json"
    export_llava(result, out, merge=[extra, extra])
    data = json.loads(out.read_text())
    assert len(data) == 5 and result.merge_duplicates == 4  # one copy, then all three again
    assert data[3]["id"] == f"extra:{existing[1]['id']}"  # an id collision gets the source's name
    assert data[4]["conversations"][0]["value"] == "<image>\nQ2?"


def test_report_has_counts_histogram_and_examples(pool, tmp_path):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_fraction=0.4, per_figure=2), figures)
    out = tmp_path / "selected.json"
    export_llava(result, out)
    report = write_report(result, out)
    text = report.read_text()
    assert report.name == "selected.report.md" and (tmp_path / "selected.scores.png").stat().st_size > 1000
    assert "![score histogram](selected.scores.png)" in text
    kept = {d.domain: 0 for d in result.decisions}
    for decision in result.kept:
        kept[decision.domain] += 1
    assert f"| ct_scan | {kept['ct_scan']} | {18 - kept['ct_scan']} |" in text
    assert "| per-figure cap |" in text and "## Dropped, best first" in text


# -- import ------------------------------------------------------------------------------------------------
def test_import_llava_files_as_candidates(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    source = tmp_path / "llava_med.json"
    source.write_text(
        json.dumps(
            [
                {"id": "1", "image": "a.jpg", "conversations": turns(("<image>\nWhat?", "A CT."))},
                {
                    "id": "1",
                    "image": "b.jpg",
                    "conversations": turns(("Where?", "Liver."), ("Size?", "3 cm.")),
                },
            ]
        )
    )
    out = tmp_path / "candidates.jsonl"
    result = import_llava([source], out, images=images)
    assert (result.candidates, result.images_found, result.images_missing, result.renamed_ids) == (2, 1, 1, 1)
    records = list(read_records(out, Candidate))
    assert records[0].figure_id == "a.jpg" and records[0].image == "imgs/a.jpg"  # relative to the output
    assert records[1].id == "llava_med:1:1"  # a repeated id is made unique, naming the source and line
    assert records[0].generator["backend"] == "import"


def test_bad_llava_record_names_file_line_and_field(tmp_path):
    source = tmp_path / "bad.jsonl"
    good = {"id": "x", "image": "a.jpg", "conversations": turns(("Q", "A"))}
    bad = {"id": "y", "image": "a.jpg", "conversations": [{"from": "robot", "value": "hi"}]}
    source.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError) as error:
        import_llava([source], tmp_path / "out.jsonl")
    assert error.value.line == 2 and error.value.field.startswith("conversations.0")
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    with pytest.raises(InputError):
        list(read_llava(source))


def test_biomed_vital_demonstrations_import_with_captions_and_missing_images(shared_data, tmp_path):
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    out, figures_out = tmp_path / "candidates.jsonl", tmp_path / "figures.jsonl"
    result = import_llava([source], out, figures_out=figures_out)
    assert result.candidates == 58 and result.images_missing == 58 and result.figures > 0
    figures = {f.id: f for f in read_records(figures_out, Figure)}
    for record in read_records(out, Candidate):
        assert record.figure_id in figures
    assert sum("ct_scan" in f.domains for f in figures.values()) == 28


def test_cli_select_and_import_end_to_end(pool, tmp_path, shared_data):
    from vital.cli import app

    runner = CliRunner()
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    imported = runner.invoke(
        app,
        [
            "candidates",
            "import",
            str(source),
            "--out",
            str(tmp_path / "c.jsonl"),
            "--figures-out",
            str(tmp_path / "f.jsonl"),
        ],
    )
    assert imported.exit_code == 0, imported.output
    assert "58 candidates" in imported.output and "0 with an image file" in imported.output
    scores = tmp_path / "scores.jsonl"
    candidates = list(read_records(tmp_path / "c.jsonl", Candidate))
    scores.write_text(
        "".join(
            json.dumps({"candidate_id": c.id, "score": float(n % 10), "source": "model"}) + "\n"
            for n, c in enumerate(candidates)
        )
    )
    out = tmp_path / "selected.json"
    args = [
        "select",
        str(tmp_path / "c.jsonl"),
        "--scores",
        str(scores),
        "--figures",
        str(tmp_path / "f.jsonl"),
        "--out",
        str(out),
        "--top-fraction",
        "0.5",
    ]
    strict = runner.invoke(app, args)
    assert strict.exit_code == 0, strict.output
    assert "kept 0 of 58" in strict.output and json.loads(out.read_text()) == []
    lenient = runner.invoke(app, [*args, "--keep-missing-images", "--balance-domains", "--per-figure", "1"])
    assert lenient.exit_code == 0, lenient.output
    data = json.loads(out.read_text())
    assert len(data) == 29 and (tmp_path / "selected.report.md").is_file()
    bad_quota = runner.invoke(app, [*args, "--domain-quota", "xray=3"])
    assert bad_quota.exit_code != 0


def test_dicom_images_are_exported_as_png_for_llava(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    figures = {"ct": Figure(id="ct", image=str(dicom), caption="Axial CT.", domains=["ct_scan"])}
    candidates = [candidate("ct-0", "ct", dicom)]
    result = select_candidates(candidates, {"ct-0": 1.0}, SelectionPolicy(), figures)
    out = tmp_path / "selected.json"
    export_llava(result, out)
    record = json.loads(out.read_text())[0]
    assert record["image"].startswith("selected.images/") and record["image"].endswith(".png")
    with Image.open(tmp_path / record["image"]) as image:
        assert image.size == (128, 128)


def test_merged_image_paths_are_rewritten_from_their_own_folder(pool, tmp_path):
    candidates, figures, scores = pool
    result = select_candidates(candidates, scores, SelectionPolicy(top_k=1), figures)
    other_images = tmp_path / "llava-med" / "images"
    other_images.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other_images / "pmc1.jpg")
    extra = tmp_path / "llava-med" / "instruct.json"
    record = {"id": "m1", "image": "pmc1.jpg", "conversations": turns(("Q?", "A."))}
    extra.write_text(json.dumps([record]))
    out = tmp_path / "out" / "selected.json"
    export_llava(result, out, merge=[extra], image_root=tmp_path, merge_images=other_images)
    merged = json.loads(out.read_text())[-1]
    assert merged["image"] == "llava-med/images/pmc1.jpg"  # relative to --image-root, like every record
    export_llava(result, out, merge=[extra])
    assert json.loads(out.read_text())[-1]["image"] == "pmc1.jpg"  # kept as written without --merge-images
