"""Candidate generation: a vision-language model writes conversations about figures.

>>> from vital.generation import GenerateConfig, generate
>>> from vital.llm import EngineConfig
>>> result = generate("figures.jsonl", "candidates.jsonl",
...                   GenerateConfig(candidates=2, demos="demos.json", demo_policy="per-domain"),
...                   EngineConfig(base_url="http://127.0.0.1:8000/v1", model="llava", concurrency=32))
>>> result.stats.done, result.failed, result.failures

``figures`` is a figures file or figure records; nothing is printed (pass
``progress=`` to see progress).  ``GenerateConfig(backend="caption")`` writes
grounded caption-derived conversations offline (:mod:`vital.generation.caption`).
The prompt is in :mod:`vital.generation.prompts`, demonstrations and their
policies in :mod:`vital.generation.demos`, reply parsing in
:mod:`vital.generation.parse`.
"""

from vital.generation.caption import caption_conversation
from vital.generation.demos import load_demonstrations, make_policy
from vital.generation.parse import parse_conversation
from vital.generation.prompts import SYSTEM_PROMPT, build_messages, elide_images, user_turn
from vital.generation.run import GenerateConfig, GenerateResult, candidate_id, generate

__all__ = [
    "SYSTEM_PROMPT",
    "GenerateConfig",
    "GenerateResult",
    "build_messages",
    "candidate_id",
    "caption_conversation",
    "elide_images",
    "generate",
    "load_demonstrations",
    "make_policy",
    "parse_conversation",
    "user_turn",
]
