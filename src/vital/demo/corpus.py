"""The demo corpus: real medical images that ship inside PyPI packages, with captions written for vital.

Sources: pydicom's test files (a thoracic CT slice and a small MR slice, kept
as DICOM), scikit-image's sample data (a fundus photograph, a retinal
microaneurysm crop, an immunohistochemistry section, a quantitative phase image
of a cell, the Shepp-Logan phantom) and nilearn's MNI152 T1 template (slices in
three planes, and the grey-matter probability map).  Nothing is downloaded.

Captions and mentions are ours; they describe only what the images show.  A
few hand-written demonstration conversations stand in for the ones clinicians
would choose in the annotation app.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vital.jsonl import write_jsonl_atomic


@dataclass(frozen=True)
class DemoFigure:
    id: str
    image: str
    caption: str
    mentions: tuple[str, ...]
    domains: tuple[str, ...]


FIGURES = (
    DemoFigure(
        "ct-thorax-soft",
        "ct_thorax.dcm",
        "Axial CT image at the level of the thoracic spine. A thoracic vertebral body with its spinal canal and "
        "posterior elements lies in the midline, the descending aorta sits anterior to it, and aerated lung "
        "with fine vascular markings is seen on both sides. The paraspinal muscles are seen posteriorly.",
        ("Axial CT through the mid thorax (Figure 1) shows normal alignment of the vertebra and no paraspinal mass.",),
        ("ct_scan",),
    ),
    DemoFigure(
        "ct-thorax-bone",
        "ct_thorax_bone_window.png",
        "The same axial thoracic CT slice displayed in a bone window (center 400 HU, width 1500 HU). Cortical "
        "bone of the vertebral body, pedicles, laminae and the spinous process is shown in detail; the soft "
        "tissues appear uniformly grey.",
        ("A bone window (Figure 2) shows an intact cortex of the vertebral body and posterior arch.",),
        ("ct_scan",),
    ),
    DemoFigure(
        "mr-small",
        "mr_small.dcm",
        "Low-resolution MR image (64 x 64 pixels) from a clinical DICOM series. A rounded structure with a "
        "bright rim and a dark centre is seen in the lower part of the image, surrounded by intermediate-signal "
        "soft tissue.",
        ("The MR image (Figure 3) was acquired at low matrix size for a quick localiser.",),
        ("mri",),
    ),
    DemoFigure(
        "mni-axial",
        "mni152_axial.png",
        "Axial T1-weighted MR image of the brain from the MNI152 template at the level of the centrum "
        "semiovale. White matter appears bright, grey matter darker, and the interhemispheric fissure divides "
        "the two cerebral hemispheres.",
        ("The axial slice (Figure 4) shows symmetric hemispheres with a clear grey-white matter boundary.",),
        ("mri",),
    ),
    DemoFigure(
        "mni-axial-low",
        "mni152_axial_low.png",
        "Axial T1-weighted MR image of the brain from the MNI152 template at a low level, through the "
        "temporal lobes, the midbrain and the cerebellum.",
        ("Lower axial slices (Figure 5) include the midbrain and both cerebellar hemispheres.",),
        ("mri",),
    ),
    DemoFigure(
        "mni-coronal",
        "mni152_coronal.png",
        "Coronal T1-weighted MR image of the brain from the MNI152 template through the lateral ventricles "
        "and the thalami. The ventricles are dark and symmetric; the cortex and the deep grey nuclei are "
        "darker than the surrounding white matter.",
        ("In the coronal plane (Figure 6) the lateral ventricles are of normal size and symmetric.",),
        ("mri",),
    ),
    DemoFigure(
        "mni-sagittal",
        "mni152_sagittal.png",
        "Midsagittal T1-weighted MR image of the brain from the MNI152 template showing the corpus callosum, "
        "the brainstem, the cerebellum and the ventricular system in the midline.",
        ("The midsagittal image (Figure 7) shows a normally shaped corpus callosum and cerebellar vermis.",),
        ("mri",),
    ),
    DemoFigure(
        "mni-grey-matter",
        "mni152_grey_matter.png",
        "Axial map of grey-matter probability from the MNI152 template: the cerebral cortex and the deep "
        "grey nuclei appear bright, white matter and cerebrospinal fluid dark.",
        ("Grey-matter probability maps (Figure 8) outline the cortical ribbon used for segmentation.",),
        ("mri",),
    ),
    DemoFigure(
        "fundus",
        "retina.jpg",
        "Colour fundus photograph of a left eye. The optic disc is at the left of the image, retinal arteries "
        "and veins arch from it above and below, and the macula with the darker fovea lies at the centre.",
        ("Fundus photography (Figure 9) shows a sharp optic disc margin and normal vessel calibre.",),
        ("other",),
    ),
    DemoFigure(
        "fundus-green",
        "retina_green_channel.png",
        "Green channel of a colour fundus photograph (a red-free view). Retinal vessels appear dark with "
        "high contrast against the background; the optic disc is bright.",
        ("The red-free image (Figure 10) increases vessel contrast.",),
        ("other",),
    ),
    DemoFigure(
        "microaneurysms",
        "retina_microaneurysms.png",
        "Grey-level crop of a retinal image showing thin dark vessels and two small dark round dots, "
        "consistent with microaneurysms.",
        ("Small dark dots next to the vessels (Figure 11) were counted as microaneurysms.",),
        ("other",),
    ),
    DemoFigure(
        "ihc-colon",
        "ihc_colon.png",
        "Immunohistochemistry of colonic glands: the protein of interest is revealed with DAB (brown) in the "
        "glandular epithelium, and hematoxylin counterstain (blue) marks the nuclei of the surrounding stroma.",
        ("Brown DAB staining (Figure 12) was confined to the epithelial cells of the glands.",),
        ("histology",),
    ),
    DemoFigure(
        "ihc-hematoxylin",
        "ihc_hematoxylin.png",
        "Hematoxylin channel separated from an immunohistochemistry image of colonic glands by colour "
        "deconvolution; nuclei are dark on a light background.",
        ("Colour deconvolution (Figure 13) separates the hematoxylin signal from DAB.",),
        ("histology",),
    ),
    DemoFigure(
        "ihc-dab",
        "ihc_dab.png",
        "DAB channel separated from an immunohistochemistry image of colonic glands by colour deconvolution; "
        "the glandular epithelium that expresses the protein is dark.",
        ("The DAB channel (Figure 14) shows strong expression in the glands and little in the stroma.",),
        ("histology",),
    ),
    DemoFigure(
        "cell-phase",
        "cell_phase.tif",
        "Quantitative phase image of a single cell floating in saline, retrieved from a digital hologram; the "
        "cell appears as a bright round object with a higher phase value than the background.",
        ("A single rounded cell (Figure 15) shows a phase value well above the background.",),
        ("histology",),
    ),
    DemoFigure(
        "phantom",
        "shepp_logan_phantom.png",
        "The Shepp-Logan phantom, a numerical model of an axial head section used to test CT reconstruction: "
        "an outer bright ellipse (the skull) encloses grey brain tissue with two dark elliptical ventricles "
        "and several small ellipses.",
        ("Reconstruction was first tested on the Shepp-Logan phantom (Figure 16).",),
        ("ct_scan",),
    ),
)

# Hand-written demonstrations, standing in for conversations clinicians would pick.
DEMONSTRATIONS = (
    (
        "ct-thorax-soft",
        [
            ("What imaging modality is this?", "This is an axial computed tomography (CT) image."),
            ("Which part of the body is shown?",
             "The slice passes through the thorax at the level of a thoracic vertebra, with lung on both sides."),
            ("What is the round structure just in front of the vertebral body?",
             "It is the descending thoracic aorta, which runs in front of and slightly to the left of the spine."),
            ("Are the lungs aerated?", "Yes. Both lungs are dark, as aerated lung should be, with fine vascular "
             "markings and no visible consolidation on this slice."),
        ],
    ),
    (
        "mni-sagittal",
        [
            ("In which plane is this MR image?", "It is a midsagittal image, dividing the brain into left and "
             "right halves."),
            ("Which midline structures can be seen?", "The corpus callosum, the brainstem, the cerebellum and "
             "the ventricular system are all visible in the midline."),
            ("Is this a T1- or T2-weighted image?", "It is T1-weighted: white matter is brighter than grey "
             "matter and cerebrospinal fluid is dark."),
        ],
    ),
    (
        "ihc-colon",
        [
            ("What kind of image is this?", "A microscopy image of an immunohistochemistry (IHC) stained tissue "
             "section."),
            ("What does the brown colour show?", "Brown is the DAB chromogen, marking where the target protein "
             "is expressed; here it lies in the epithelium of the colonic glands."),
            ("What is the blue stain?", "Hematoxylin counterstain, which colours nuclei blue, mostly in the "
             "stroma between the glands."),
            ("Is the staining present in the stroma?", "Only weakly. The expression is concentrated in the "
             "glandular epithelium."),
        ],
    ),
)


def _save_png(array: np.ndarray, path: Path, clip_percent: float = 0.0) -> None:
    array = array.astype(np.float32)
    low, high = (float(v) for v in np.percentile(array, [clip_percent, 100.0 - clip_percent]))
    array = np.clip(array, low, high)
    scaled = (array - low) / (high - low or 1.0) * 255.0
    Image.fromarray(scaled.astype(np.uint8)).save(path)


def _mni_slices(folder: Path) -> None:
    from nilearn import datasets

    t1 = np.asarray(datasets.load_mni152_template(resolution=1).get_fdata())
    grey = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata())
    x, y, z = (size // 2 for size in t1.shape)
    _save_png(np.rot90(t1[:, :, z + 12]), folder / "mni152_axial.png")
    _save_png(np.rot90(t1[:, :, z - 40]), folder / "mni152_axial_low.png")
    _save_png(np.rot90(t1[:, y + 8, :]), folder / "mni152_coronal.png")
    _save_png(np.rot90(t1[x, :, :]), folder / "mni152_sagittal.png")
    _save_png(np.rot90(grey[:, :, z + 12]), folder / "mni152_grey_matter.png")


def _pydicom_test_file(name: str) -> Path:
    """A file of the test data installed with pydicom (never downloaded)."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name, download=False)
    if not isinstance(found, str):
        raise FileNotFoundError(f"pydicom's installed test data has no {name}")
    return Path(found)


def _pydicom_files(folder: Path) -> None:
    from vital.figures.images import load_image

    ct = _pydicom_test_file("CT_small.dcm")
    shutil.copyfile(ct, folder / "ct_thorax.dcm")
    shutil.copyfile(_pydicom_test_file("MR_small.dcm"), folder / "mr_small.dcm")
    load_image(ct, window=(400.0, 1500.0)).save(folder / "ct_thorax_bone_window.png")


def _scikit_image_files(folder: Path) -> None:
    from skimage import color, data

    retina = data.retina()
    Image.fromarray(retina).save(folder / "retina.jpg", quality=92)
    Image.fromarray(retina[:, :, 1]).save(folder / "retina_green_channel.png")
    Image.fromarray(data.microaneurysms()).resize((306, 306), Image.Resampling.BICUBIC).save(
        folder / "retina_microaneurysms.png"
    )
    ihc = data.immunohistochemistry()
    Image.fromarray(ihc).save(folder / "ihc_colon.png")
    hed = color.rgb2hed(ihc)
    _save_png(-hed[:, :, 0], folder / "ihc_hematoxylin.png", clip_percent=1.0)
    _save_png(-hed[:, :, 2], folder / "ihc_dab.png", clip_percent=1.0)
    cell = data.cell().astype(np.uint16) * 256  # a 16-bit TIFF exercises the loader's high-depth path
    Image.fromarray(cell).save(folder / "cell_phase.tif")
    phantom = data.shepp_logan_phantom()
    _save_png(phantom, folder / "shepp_logan_phantom.png")


def build_corpus(root: Path) -> tuple[Path, Path]:
    """Write ``images/``, ``corpus.csv`` and ``demonstrations.jsonl`` under ``root``; return the two files."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    _pydicom_files(images)
    _scikit_image_files(images)
    _mni_slices(images)

    corpus = root / "corpus.csv"
    with corpus.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "caption", "mentions", "domains"])
        for figure in FIGURES:
            writer.writerow([figure.id, f"images/{figure.image}", figure.caption, "|".join(figure.mentions),
                             "|".join(figure.domains)])

    by_id = {figure.id: figure for figure in FIGURES}
    demonstrations = root / "demonstrations.jsonl"
    write_jsonl_atomic(
        demonstrations,
        (
            {
                "id": f"demo-{figure_id}",
                "image": f"images/{by_id[figure_id].image}",
                "caption": by_id[figure_id].caption,
                "mentions": list(by_id[figure_id].mentions),
                "domains": list(by_id[figure_id].domains),
                "meta": {"source": "hand-written for the vital demo"},
                "conversations": [
                    turn
                    for question, answer in turns
                    for turn in ({"from": "human", "value": question}, {"from": "gpt", "value": answer})
                ],
            }
            for figure_id, turns in DEMONSTRATIONS
        ),
    )
    return corpus, demonstrations


def write_questions(corpus: Path, out: Path) -> Path:
    """VQA questions about the corpus's figures, with answers, in LLaVA-Med's conversation format.

    Two per figure whose caption names an imaging modality (found as the
    offline caption backend finds it): "What kind of image is this?" (open;
    the modality) and "Is this <a modality>?" (closed; every other figure is
    asked about a modality it is not, so that "yes" is right only half the
    time).  The tuned demo model is evaluated on them against its base.
    """
    from vital.generation.caption import MODALITIES, find_modality
    from vital.jsonl import write_json_atomic

    with corpus.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    questions = []
    names = [name for _, name in MODALITIES]
    for index, row in enumerate(rows):
        modality = find_modality(" ".join([row["caption"], *row["mentions"].split("|")]))
        if modality is None:
            continue
        others = [name for name in names if name != modality]
        asked = others[index % len(others)] if index % 2 else modality
        image = str(Path("images") / Path(row["image"]).name)
        for suffix, text, answer, answer_type in (
            ("kind", "What kind of image is this?", modality.removeprefix("a ").removeprefix("an "), "OPEN"),
            ("is", f"Is this {asked}?", "yes" if asked == modality else "no", "CLOSED"),
        ):
            questions.append({
                "id": f"{row['id']}/{suffix}", "image": image, "answer_type": answer_type,
                "conversations": [{"from": "human", "value": f"<image>\n{text}"}, {"from": "gpt", "value": answer}],
            })
    write_json_atomic(out, questions)
    return out
