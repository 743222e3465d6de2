"""The offline ``caption`` backend: grounded instructions written from the caption alone.

In the spirit of LLaVA-Med's concept-alignment data, each conversation opens
with a request to describe the image, drawn from a pool of phrasings: a brief
request answered by the caption, or a detailed one answered by the caption
and the paper's sentences about the figure.  Then, only where the caption or
mentions state it, simple questions follow: the imaging modality (open, or a
yes/no question, sometimes about a modality it is not) and the organ or body
region.  Nothing is claimed that the text does not say, and every record is
labelled ``backend: caption``.  Choices are seeded by (figure id, candidate),
so candidates of one figure differ and reruns are identical.
"""

from __future__ import annotations

import random
import re

from vital.conversation import with_image_token
from vital.generation.demos import stable_seed
from vital.records import Figure, Turn

BRIEF_REQUESTS = (
    "Give a short description of this image.",
    "What does this figure show, in brief?",
    "Summarise what the image shows in a sentence or two.",
    "Briefly, what is shown here?",
    "Offer a concise account of this image.",
    "What is this image of? Keep it short.",
)
DETAILED_REQUESTS = (
    "Describe this image in detail.",
    "Walk me through what this figure shows.",
    "Give a thorough description of what is visible in the image.",
    "Explain the content of this figure carefully and completely.",
    "What can be observed in this image? Please be detailed.",
    "Could you describe everything this image presents?",
)
MODALITY_QUESTIONS = (
    "Which imaging technique produced this picture?",
    "What kind of image is this?",
    "What modality was used to acquire this image?",
)
ORGAN_QUESTIONS = (
    "Which organ or body region is shown?",
    "What part of the body does this image show?",
    "Which anatomical structure is the focus of this image?",
)

# (pattern, how an answer names it); the first match wins.
MODALITIES = (
    (r"\b(?:pet[-/ ]?ct|positron emission)", "a positron emission tomography (PET) image"),
    (r"\b(?:ct|cta|computed tomograph\w*)\b", "a computed tomography (CT) image"),
    (r"\b(?:mri|mr|magnetic resonance|t1-weighted|t2-weighted|flair)\b", "a magnetic resonance (MRI) image"),
    (r"\b(?:x-ray|xray|radiograph\w*|chest film)\b", "a radiograph (X-ray)"),
    (r"\b(?:ultrasound|sonograph\w*|ultrasonograph\w*|echocardiogra\w*|doppler)\b", "an ultrasound image"),
    (r"\b(?:angiogra\w*)\b", "an angiogram"),
    (r"\b(?:h&e|hematoxylin|haematoxylin|histolog\w*|micrograph\w*|immunohistochem\w*|"
     r"biopsy specimen|stain(?:ed|ing)?)\b", "a microscopy (histology) image"),
    (r"\b(?:endoscop\w*|colonoscop\w*)\b", "an endoscopic image"),
    (r"\b(?:fundus|retina\w*)\b", "a retinal fundus photograph"),
    (r"\b(?:gross (?:specimen|pathology)|resected specimen)\b", "a photograph of a gross specimen"),
    (r"\bphotograph\w*\b", "a photograph"),
)
ORGANS = (
    "brain", "skull", "spine", "spinal cord", "neck", "thyroid", "chest", "lung", "heart", "aorta", "breast",
    "liver", "gallbladder", "pancreas", "spleen", "kidney", "adrenal", "stomach", "colon", "bowel", "bladder",
    "prostate", "uterus", "ovary", "pelvis", "hip", "knee", "shoulder", "hand", "foot", "bone", "skin",
    "eye", "retina", "abdomen",
)
_ORGAN_PATTERN = re.compile(r"\b(" + "|".join(re.escape(o) for o in ORGANS) + r")s?\b", re.IGNORECASE)
_FIGURE_REFERENCE = re.compile(r"\s*[\[(]\s*(?:fig(?:ure)?s?\.?|supplementary)[^\])]*[\])]", re.IGNORECASE)

BACKEND = {"backend": "caption", "model": "caption-v1"}


def _sentence(text: str) -> str:
    text = _FIGURE_REFERENCE.sub("", text).strip()
    text = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", text))
    return text if text.endswith((".", "!", "?")) else f"{text}."


def find_modality(text: str) -> str | None:
    for pattern, name in MODALITIES:
        if re.search(pattern, text, re.IGNORECASE):
            return name
    return None


def find_organ(text: str) -> str | None:
    match = _ORGAN_PATTERN.search(text)
    return match.group(1).lower() if match else None


def caption_conversation(figure: Figure, k: int) -> list[Turn]:
    """Candidate ``k``'s conversation about ``figure``, from its caption and mentions only."""
    rng = random.Random(stable_seed("caption", figure.id, k))
    caption = _sentence(figure.caption)
    mentions = [_sentence(m) for m in figure.mentions if m.strip()]
    detailed = bool(mentions) and k % 2 == 1
    turns: list[tuple[str, str]] = []
    if detailed:
        turns.append((rng.choice(DETAILED_REQUESTS), " ".join([caption, *mentions[:3]])))
    else:
        turns.append((rng.choice(BRIEF_REQUESTS), caption))

    stated = " ".join([figure.caption, *figure.mentions])
    modality = find_modality(stated)
    if modality is not None:
        roll = rng.random()
        if roll < 0.5:
            turns.append((rng.choice(MODALITY_QUESTIONS), f"This is {modality}."))
        elif roll < 0.75:
            turns.append((f"Is this {modality}?", f"Yes, this is {modality}."))
        else:
            wrong = rng.choice([name for _, name in MODALITIES if name != modality])
            turns.append((f"Is this {wrong}?", f"No, this is {modality}."))
    organ = find_organ(stated)
    if organ is not None:
        turns.append((rng.choice(ORGAN_QUESTIONS), f"The image shows the {organ}."))
    if len(turns) > 1 and k % 2 == 1 and not detailed:
        turns = [turns[0], *reversed(turns[1:])]

    conversation = []
    for question, answer in turns:
        conversation.append(Turn(speaker="human", value=question))
        conversation.append(Turn(speaker="gpt", value=answer))
    return with_image_token(conversation)
