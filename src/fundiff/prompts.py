"""Text prompts for fundiff's class-conditioned models: a prompt names a class, "" is null.

Accepted forms, case-insensitive: the class name or an alias ("3", "three", "sneaker",
"t-shirt"), optionally after a phrase such as "a photo of a", "an", "the".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fundiff.errors import FundiffError, shorten

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_PREFIX = re.compile(r"^(?:(?:a|an)\s+)?(?:(?:photo|picture|drawing|image)\s+of\s+)?(?:(?:a|an|the|some)\s+)?")


def _aliases(name: str) -> list[str]:
    """All accepted spellings of one class name (lower case)."""
    low = name.lower()
    out = {low, low.replace("-", " "), low.replace("-", "")}
    for part in re.split(r"[/]", low):
        out |= {part, part.replace("-", " "), part.replace("-", "")}
    if low.isdigit() and len(low) == 1:
        out.add(_DIGIT_WORDS[int(low)])
    out |= {a + "s" for a in list(out) if not a.isdigit()}  # plurals: "sneakers"
    return sorted(out)


def class_index(prompt: str, class_names: Sequence[str]) -> int | None:
    """The class a prompt names (index into ``class_names``), or None for the null prompt ""."""
    text = " ".join(prompt.strip().lower().split()).rstrip(".!")
    if text == "":
        return None
    text = _PREFIX.sub("", text)
    for i, name in enumerate(class_names):
        if text in _aliases(name):
            return i
    accepted = ", ".join(repr(n) for n in class_names)
    raise FundiffError(
        f"unknown prompt {shorten(prompt)}; name one of the classes {accepted} "
        f"(e.g. 'a photo of a {class_names[-1]}'), or '' for none"
    )
