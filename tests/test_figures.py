import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from vital.errors import InputError
from vital.figures import ImportConfig, import_figures
from vital.figures.domains import normalize_domain, normalize_domains
from vital.figures.images import ImageError, load_image, verify_image
from vital.jsonl import failures_path, iter_json_lines
from vital.records import read_figures

CT = Path(get_testdata_file("CT_small.dcm", download=False))


def llava_med_record(pair_id, caption="Axial CT of the chest.", **domains):
    flags = {name: False for name in ("chest_xray", "mri", "ct_scan", "histology", "gross")}
    flags.update(domains)
    return {
        "pair_id": pair_id,
        "pmid": pair_id.split("_")[0],
        "fig_label": "Figure 1",
        "fig_caption": caption,
        "in_text_mention": [{"tokens": "CT showed a mass [ Figure 1 ] ."}, "A second mention ."],
        "domain": flags,
    }


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(folder / "1_F1.png")
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(folder / "2_F1.jpg")
    return folder


def test_llava_med_dict_of_domains_merges_repeated_figures(tmp_path, images):
    src = tmp_path / "captions.json"
    src.write_text(json.dumps({
        "histology": [llava_med_record("1_F1", histology=True), llava_med_record("3_F2", mri=True)],
        "gross": [llava_med_record("1_F1", gross=True)],
    }, indent=2))
    out = tmp_path / "out" / "figures.jsonl"
    summary = import_figures(src, out, ImportConfig(images=images))
    figures = {f.id: f for f in read_figures(out)}
    assert set(figures) == {"1_F1", "3_F2"}
    assert figures["1_F1"].domains == ["histology", "gross"]
    assert figures["1_F1"].mentions == ["CT showed a mass [ Figure 1 ] .", "A second mention ."]
    assert figures["1_F1"].meta["pmid"] == "1"
    assert Path(figures["1_F1"].image) == (images / "1_F1.jpg").resolve()
    assert summary.merged_duplicates == 1
    assert summary.images_missing == 2  # 1_F1.jpg and 3_F2.jpg are not in the folder (1_F1 is a .png)
    failures = [obj for _, obj in iter_json_lines(failures_path(out))]
    assert {f["id"] for f in failures} == {"1_F1", "3_F2"}
    assert all(f["reason"] == "image file not found" for f in failures)


def test_llava_med_list_and_jsonl_with_image_field(tmp_path, images):
    records = [dict(llava_med_record("1_F1", chest_xray=True), image="1_F1.png"),
               dict(llava_med_record("2_F1", ct_scan=True), image="2_F1.jpg")]
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(records))
    as_jsonl = tmp_path / "records.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    for src in (as_list, as_jsonl):
        out = tmp_path / f"{src.stem}.figures.jsonl"
        summary = import_figures(src, out, ImportConfig(images=images))
        assert summary.figures == 2 and summary.images_found == 2 and summary.failures is None
        assert [f.domains for f in read_figures(out)] == [["chest_xray"], ["ct_scan"]]


def test_image_paths_are_relative_to_the_output_when_below_it(tmp_path, images):
    src = tmp_path / "list.json"
    src.write_text(json.dumps([dict(llava_med_record("1_F1", mri=True), image="images/1_F1.png")]))
    out = tmp_path / "figures.jsonl"
    import_figures(src, out)
    (_, raw), = iter_json_lines(out)
    assert raw["image"] == "images/1_F1.png"
    figure, = read_figures(out)
    assert figure.image == str((images / "1_F1.png").resolve())


def test_biomed_vital_keeps_conversations(tmp_path):
    record = dict(llava_med_record("9_F2", ct_scan=True), id=1, imgs="9_F2.jpg",
                  conversations=[{"from": "human", "value": "What modality?"}, {"from": "gpt", "value": "CT."}])
    src = tmp_path / "demos.json"
    src.write_text(json.dumps([record]))
    out = tmp_path / "demos.jsonl"
    summary = import_figures(src, out, ImportConfig(format="auto"))
    figure, = read_figures(out)
    assert summary.demonstrations == 1
    assert figure.id == "9_F2" and figure.meta["demo_index"] == 1
    assert [t.speaker for t in figure.conversations] == ["human", "gpt"]


def test_csv_import_with_mentions_domains_and_unknown_domain(tmp_path, images):
    src = tmp_path / "corpus.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "caption", "mentions", "domains"])
        writer.writerow(["a", "images/1_F1.png", "Chest radiograph, PA view.", "first|second", "CXR"])
        writer.writerow(["b", "images/2_F1.jpg", "H&E, x200, glands.", "", "histopathology;dermoscopy"])
    out = tmp_path / "figures.jsonl"
    summary = import_figures(src, out)
    a, b = read_figures(out)
    assert a.mentions == ["first", "second"] and a.domains == ["chest_xray"]
    assert b.domains == ["histology", "other"] and b.meta["unknown_domains"] == ["dermoscopy"]
    assert summary.unknown_domains["dermoscopy"] == 1


def test_csv_without_caption_column(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("id,image,text\na,x.png,hello\n")
    with pytest.raises(InputError) as info:
        import_figures(src, tmp_path / "out.jsonl")
    assert info.value.field == "caption" and info.value.line == 1


def test_csv_empty_caption_cell_names_line(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("id,image,caption\na,x.png,fine\nb,y.png,\n")
    with pytest.raises(InputError) as info:
        import_figures(src, tmp_path / "out.jsonl")
    assert (info.value.line, info.value.field) == (3, "caption")


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ('[\n  {"pair_id": "1_F1", "fig_caption": "ok"},\n  {"pair_id": "2_F1"}\n]', 3, "fig_caption", "missing"),
        ('[\n  {"pair_id": "1_F1", "fig_caption": "ok"},\n  {"pair_id": "2_F1", "fig_caption": 3.5, '
         '"in_text_mention": 7}\n]', 3, "in_text_mention", "expected a list"),
        ('[\n  {"pair_id": "1_F1", "fig_caption": "ok"},\n\n  {"pair_id": "2_F1", fig_caption: "x"}\n]', 4, None,
         "not valid JSON"),
        ('{"mri": [\n {"pair_id": "1_F1", "fig_caption": ["a list"]}\n]}', 2, "fig_caption", "expected text"),
    ],
)
def test_broken_json_names_line_and_field(tmp_path, text, line, field, message):
    src = tmp_path / "broken.json"
    src.write_text(text)
    with pytest.raises(InputError) as info:
        import_figures(src, tmp_path / "out.jsonl", ImportConfig(format="llava-med"))
    assert info.value.line == line and info.value.field == field and message in str(info.value)


def test_bad_input_leaves_an_earlier_output_untouched(tmp_path):
    out = tmp_path / "figures.jsonl"
    out.write_text('{"id":"kept","caption":"from an earlier import"}\n')
    src = tmp_path / "broken.jsonl"
    src.write_text('{"pair_id": "1", "fig_caption": "x"}\n{"pair_id": "2"}\n')
    with pytest.raises(InputError):
        import_figures(src, out)
    assert "kept" in out.read_text()


def test_empty_file_and_unknown_format(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(InputError, match="file is empty"):
        import_figures(empty, tmp_path / "o.jsonl")
    with pytest.raises(InputError, match="'parquet' is not one of auto"):
        import_figures(empty, tmp_path / "o.jsonl", ImportConfig(format="parquet"))


def test_undetectable_format(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text('{"question": "is this a CT?"}\n')
    with pytest.raises(InputError, match="cannot tell the format"):
        import_figures(src, tmp_path / "o.jsonl")


def test_unreadable_images_are_listed_and_require_images_stops(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    no_pixels = pydicom.dcmread(CT)
    del no_pixels.PixelData
    no_pixels.save_as(folder / "no_pixels.dcm")
    src = tmp_path / "c.csv"
    src.write_text("id,image,caption\na,images/broken.png,x\nb,images/no_pixels.dcm,y\n")
    out = tmp_path / "figures.jsonl"
    summary = import_figures(src, out)
    assert summary.figures == 2 and summary.images_unreadable == 2
    reasons = {obj["id"]: obj["reason"] for _, obj in iter_json_lines(failures_path(out))}
    assert "cannot decode image" in reasons["a"]
    assert reasons["b"] == "DICOM file has no pixel data"
    with pytest.raises(InputError) as info:
        import_figures(src, tmp_path / "strict.jsonl", ImportConfig(require_images=True))
    assert info.value.line == 2 and info.value.field == "image"
    assert not (tmp_path / "strict.jsonl").exists()


def test_load_image_formats(tmp_path):
    ct = load_image(CT)
    assert ct.mode == "RGB" and ct.size == (128, 128)
    assert np.asarray(ct).std() > 10  # windowed to a visible range, not a flat image
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(tmp_path / "deep.tif")
    deep = load_image(tmp_path / "deep.tif")
    assert deep.mode == "RGB" and np.asarray(deep).max() == 255
    Image.new("L", (8, 8), 7).save(tmp_path / "g.jpg")
    assert load_image(tmp_path / "g.jpg").mode == "RGB"
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="not found"):
        verify_image(tmp_path / "absent.png")


def test_dicom_window_override_changes_the_image():
    default = np.asarray(load_image(CT))
    bone = np.asarray(load_image(CT, window=(400, 1500)))
    assert not np.array_equal(default, bone)


def test_domain_normalisation():
    assert normalize_domain("Chest X-ray") == "chest_xray"
    assert normalize_domain("CT") == "ct_scan"
    assert normalize_domain("H&E") == "histology"
    assert normalize_domain("Sonography") == "ultrasound"
    assert normalize_domain("dermoscopy") is None
    assert normalize_domains(["MRI", "mr", "dermoscopy"]) == (["mri", "other"], ["dermoscopy"])


def test_shared_llava_med_figure_captions(tmp_path, shared_data):
    out = tmp_path / "f.jsonl"
    summary = import_figures(shared_data / "llava-med-eval" / "llava_med_eval_qa50_fig_captions.json", out)
    figures = {f.id: f for f in read_figures(out)}
    assert summary.figures == len(figures) == 50
    assert figures["18063892_F3"].domains == ["histology", "gross"]
    assert summary.images_missing == 50  # the eval images are not shipped; each is listed
    assert sum(1 for _ in iter_json_lines(failures_path(out))) == 50


def test_shared_clinician_demonstrations(tmp_path, shared_data):
    out = tmp_path / "d.jsonl"
    source = shared_data / "biomed-vital" / "clinician_demonstrations.json"
    summary = import_figures(source, out, ImportConfig(format="biomed-vital"))
    figures = list(read_figures(out))
    assert summary.figures == 58 and summary.demonstrations == 56  # two break the turn rules:
    assert [entry.split(":")[0] for entry in summary.invalid_demonstrations] == ["34 (33240703_FIG1)",
                                                                                 "49 (31910164_F3)"]
    assert "turn 7 is from 'gpt'" in summary.invalid_demonstrations[0]
    assert summary.per_domain == {"ct_scan": 28, "mri": 15, "chest_xray": 12, "histology": 2, "gross": 2}
    assert all(f.conversations and f.conversations[0].speaker == "human" for f in figures)


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b"id,image,caption\na,x.png,ok\nb,y.png,caf\xe9\n", 3, "not UTF-8 text"),
        (b"id,image,caption\na,x.png,o\x00k\n", 2, "binary data"),
        (b'id,image,caption\na,x.png,ok\nb,y.png,"cut inside a quote\n', 3, "ends inside a quoted field"),
        (b"id,image,caption\na,x.png," + b"w" * 200_000 + b"\n", 2, "longer than the CSV limit"),
    ],
    ids=["latin-1", "binary", "torn-quote", "huge-field"],
)
def test_bad_csv_is_one_error_naming_file_and_line(tmp_path, content, line, problem):
    src = tmp_path / "corpus.csv"
    src.write_bytes(content)
    out = tmp_path / "figures.jsonl"
    out.write_text("earlier output\n")
    with pytest.raises(InputError) as caught:
        import_figures(src, out, ImportConfig(check_images=False))
    assert (caught.value.path, caught.value.line) == (str(src), line)
    assert problem in caught.value.problem
    assert out.read_text() == "earlier output\n"  # nothing already produced is lost


def test_a_directory_is_not_a_corpus(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        import_figures(tmp_path, tmp_path / "figures.jsonl")
