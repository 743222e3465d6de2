"""Normalise the many spellings of an imaging domain to the labels in :data:`vital.records.DOMAINS`."""

from __future__ import annotations

import re

from vital.records import DOMAINS

_SYNONYMS = {
    "chest_xray": ["chest_xray", "cxr", "chest x ray", "chest xray", "x ray", "xray", "radiograph", "radiography"],
    "ct_scan": ["ct_scan", "ct", "ct scan", "computed tomography", "cta", "pet ct"],
    "mri": ["mri", "mr", "magnetic resonance", "magnetic resonance imaging", "fmri", "dwi"],
    "histology": [
        "histology", "histopathology", "pathology", "microscopy", "ihc", "immunohistochemistry",
        "cytology", "he", "h e", "h and e",
    ],
    "gross": ["gross", "gross pathology", "photograph", "clinical photograph", "endoscopy"],
    "ultrasound": ["ultrasound", "us", "sonography", "echocardiography", "echo", "doppler"],
    "other": ["other"],
}
_LOOKUP = {spelling: label for label, spellings in _SYNONYMS.items() for spelling in spellings}


def _plain(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def normalize_domain(value: str) -> str | None:
    """The canonical label for ``value``, or None when it names no known domain."""
    text = value.strip()
    if text in DOMAINS:
        return text
    plain = _plain(text)
    return _LOOKUP.get(plain) or _LOOKUP.get(plain.replace(" ", "_"))


def normalize_domains(values: list[str]) -> tuple[list[str], list[str]]:
    """(canonical labels in first-seen order without repeats, the values that matched none)."""
    labels: list[str] = []
    unknown: list[str] = []
    for value in values:
        label = normalize_domain(value)
        if label is None:
            unknown.append(value)
            label = "other"
        if label not in labels:
            labels.append(label)
    return labels, unknown
