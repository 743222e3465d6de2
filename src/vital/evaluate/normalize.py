"""Answer normalisation shared by both scoring modes.

The rules are those of the VQA challenge's answer normaliser as LLaVA-Med
uses it (lower-case first, then):

1. each punctuation mark of :data:`PUNCTUATION` is *removed* when the text has
   that mark next to a space, or when the text contains a digit-comma-digit
   group (``1,000``); otherwise it is *replaced by a space*.  The decision is
   made on the text as it came in, once per mark;
2. a period not followed by a digit is removed (``3.5`` keeps its period);
3. the text is split on whitespace; number words ``none``, ``zero`` ...
   ``ten`` become digits, the articles ``a``/``an``/``the`` are dropped and
   apostrophe-less contractions get their apostrophes back (``dont`` ->
   ``don't``).

LLaVA-Med passes the period pattern's flags where Python expects the maximum
number of replacements, so its scorer removes at most 32 periods per text;
``period_limit=32`` reproduces that, the default mode has no limit.
"""

from __future__ import annotations

import re
from functools import lru_cache

PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
LLAVA_MED_PERIOD_LIMIT = 32

# The spelled-out forms the contraction table restores.  A word matches when it
# is one of these with exactly one apostrophe left out ("couldnt've" and
# "couldn'tve" both become "couldn't've"); forms that are also ordinary words
# without their apostrophe (he'll -> hell, we'd -> wed, it's -> its) are not
# listed, because the table must not touch those words.
_CONTRACTED_FORMS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've
mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't
shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's
something'd something'd've something'll that's there'd there'd've there're there's they'd they'd've
they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's
where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've
wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for form in _CONTRACTED_FORMS:
        for position, char in enumerate(form):
            if char == "'":
                table[form[:position] + form[position + 1 :]] = form
    # The VQA table this reproduces also holds one entry the wrong way round;
    # it is kept so that the compatible mode gives identical tokens.
    table["somebody'd"] = "somebodyd"
    return table


CONTRACTIONS = _contraction_table()

_PUNCTUATION_SET = frozenset(PUNCTUATION)
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
_ROLE_PREFIX = re.compile(r"^\s*(?:(?:assistant|gpt|answer|model|ai|bot)\s*:\s*)+", re.IGNORECASE)


def strip_role_prefix(text: str) -> str:
    """``"Assistant: Yes"`` -> ``"Yes"``: the speaker label some models write before the answer."""
    return _ROLE_PREFIX.sub("", text, count=1)


@lru_cache(maxsize=1 << 16)
def normalize_answer(text: str, *, period_limit: int | None = None) -> str:
    """Lower-case and normalise ``text`` by the rules in this module's docstring.

    Cached: answers and predictions repeat a lot ("yes", "Assistant: No").
    """
    text = text.lower()
    present = _PUNCTUATION_SET.intersection(text)
    if present:
        remove_all = _DIGIT_COMMA_DIGIT.search(text) is not None
        table = {}
        for mark in present:
            touches_space = f"{mark} " in text or f" {mark}" in text
            table[ord(mark)] = "" if remove_all or touches_space else " "
        text = text.translate(table)
    if "." in text:
        text = _PERIOD_NOT_BEFORE_DIGIT.sub("", text, count=period_limit or 0)
    words = []
    for word in text.split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)
