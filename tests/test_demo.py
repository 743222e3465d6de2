"""The demo corpus: real images from PyPI packages, our captions, questions about them (the round: test_pipeline)."""

import json

from vital.demo.corpus import FIGURES, build_corpus, write_questions
from vital.figures import ImportConfig, import_figures
from vital.records import read_figures


def test_the_demo_corpus_imports_with_every_image(tmp_path):
    corpus, demonstrations = build_corpus(tmp_path)
    result = import_figures(corpus, tmp_path / "figures.jsonl", ImportConfig(require_images=True))
    assert result.figures == len(FIGURES) == result.images_found
    assert {"ct_scan", "mri", "histology"} <= set(result.per_domain)
    demos = import_figures(demonstrations, tmp_path / "demos.jsonl", ImportConfig(require_images=True))
    assert demos.demonstrations == demos.figures > 0 and not demos.invalid_demonstrations
    figures = list(read_figures(tmp_path / "figures.jsonl"))
    assert any(f.image.endswith(".dcm") for f in figures)


def test_questions_ask_each_figure_its_modality_open_and_closed(tmp_path):
    corpus, _ = build_corpus(tmp_path)
    questions = json.loads(write_questions(corpus, tmp_path / "q.json").read_text())
    by_id = {q["id"]: q for q in questions}
    assert by_id["ct-thorax-soft/kind"]["conversations"][1]["value"] == "computed tomography (CT) image"
    closed = [q for q in questions if q["answer_type"] == "CLOSED"]
    answers = [q["conversations"][1]["value"] for q in closed]
    assert set(answers) == {"yes", "no"} and abs(answers.count("yes") - answers.count("no")) <= 1
    assert all((tmp_path / q["image"]).is_file() for q in questions)
