"""A text encoder that needs no download: free-text prompts -> the class vector c of fundiff's class UNet.

A prompt is cut into words (lower case, letters and digits); filler words ("a", "of", "with", ...) are
dropped, and each other word is mapped to a word of the vocabulary by light stemming (its own form, then
without a plural "s" / "es" / "ies" -> "y", "ing", "ed", "y" as in "snowy" -> "snow") or, failing that, as a
compound of two vocabulary words ("campfire" -> "camp" + "fire"). c is the multi-hot *bag of words* of the
mapped words. The vocabulary is every word of the training texts (the emoji's Unicode names, short names,
CLDR labels, keywords and skin tones: fundiff.emoji), plurals folded into their singular.

Two designs (``DESIGNS``, compared in README "Text to image on a CPU"):

- ``words``: the bag of words only;
- ``words+names``: also one *name* dimension per emoji, set when the whole prompt (filler dropped) is one
  of its names ("older man", "older_man", "snow-capped mountain"), alone or followed by one of the encoder's
  *modifiers* (the skin tones: "older man, dark skin tone" sets older man's name dimension and the words
  dark, skin, tone): a sharp identity for the model to learn beside the words, shared by an emoji's skin-tone
  variations, while any other phrasing still works through the words. A prompt that is no name sets the name
  dimension of each name it holds as a phrase (longest first from the left: "a rocket ship" -> rocket, ship);
  in training every text keeps its own emoji's name dimension only (``variant_table``).

``""`` (or only whitespace) is the null prompt: c = 0, the unconditional model of classifier-free guidance.
A prompt of no known word is a one-line error naming the closest known words; unknown words beside known
ones are left out (``describe`` shows what was understood).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from fundiff.errors import FundiffError, shorten

DESIGNS = ("words", "words+names")
FILLER = frozenset(
    "a an the of with and or in on at to for from by some is are its it this that as into over under "
    "photo picture image drawing emoji icon".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` ("snow-capped_mountain" -> snow, capped, mountain)."""
    return _WORD.findall(text.lower())


def _forms(word: str) -> list[str]:
    """Candidate vocabulary forms of ``word``, its own first."""
    out = [word]
    if len(word) > 3:
        if word.endswith("ies"):
            out.append(word[:-3] + "y")
        if word.endswith("es"):
            out.append(word[:-2])
        if word.endswith("s") and not word.endswith("ss"):
            out.append(word[:-1])
        if word.endswith("ing"):
            out += [word[:-3], word[:-3] + "e"]
            if len(word) > 5 and word[-4] == word[-5]:
                out.append(word[:-4])  # "running" -> "run"
        if word.endswith("ed"):
            out += [word[:-2], word[:-1]]
        if word.endswith("y"):
            out.append(word[:-1])  # "snowy" -> "snow"
            if len(word) > 4 and word[-2] == word[-3]:
                out.append(word[:-2])  # "sunny" -> "sun"
    return out


@dataclass(frozen=True)
class TextEncoder:
    """Prompts -> (B, dim) multi-hot float vectors; see the module docstring. ``words`` is the vocabulary
    (sorted), ``names`` maps a whole prompt (its words, joined by spaces) to a name dimension."""

    design: str
    words: tuple[str, ...]
    names: dict[str, int] = field(default_factory=dict)
    num_names: int = 0
    modifiers: tuple[str, ...] = ()  # phrases that may follow a name (their words joined by spaces)

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise FundiffError(f"unknown text encoder design {self.design!r}; choose one of {', '.join(DESIGNS)}")
        index = {w: i for i, w in enumerate(self.words)}
        stems: dict[str, int] = {}  # a word's stems -> the word: "camp" finds "camping"
        for w, i in index.items():
            for form in _forms(w)[1:]:
                stems.setdefault(form, i)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_stems", stems)

    @property
    def dim(self) -> int:
        return len(self.words) + self.num_names

    # -- building ------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        names: Iterable[Sequence[str]] = (),
        design: str = "words+names",
        modifiers: Iterable[str] = (),
    ) -> TextEncoder:
        """The encoder of a dataset: its vocabulary from every item's ``texts``; for ``words+names`` one name
        dimension per distinct set of ``names`` (an emoji's Unicode name, label and short names: its skin-tone
        variations share it), also set by a name followed by one of ``modifiers`` (the skin tones)."""
        items = [list(t) for t in texts]
        raw = {w for t in items for s in t for w in words_of(s)}
        canon = {w: _canonical(w, raw) for w in raw}
        vocab = tuple(sorted(set(canon.values()) - FILLER))
        name_dim: dict[str, int] = {}
        if design == "words+names":
            key_of: dict[tuple, int] = {}
            for t in names:
                keys = [" ".join(_content(s)) for s in t if _content(s)]
                ident = key_of.setdefault(tuple(keys), len(key_of))
                for k in keys:
                    name_dim.setdefault(k, ident)
        used = sorted(set(name_dim.values()))  # a name set whose names all belong to earlier ones gets none
        renumber = {old: new for new, old in enumerate(used)}
        mods = tuple(" ".join(_content(m)) for m in modifiers) if design == "words+names" else ()
        return cls(design, vocab, {k: renumber[v] for k, v in name_dim.items()}, len(used), mods)

    def to_dict(self) -> dict:
        d = {"design": self.design, "words": list(self.words), "names": self.names, "num_names": self.num_names}
        return d | ({"modifiers": list(self.modifiers)} if self.modifiers else {})

    @classmethod
    def from_dict(cls, d: dict) -> TextEncoder:
        try:
            return cls(str(d["design"]), tuple(d["words"]), {str(k): int(v) for k, v in d["names"].items()},
                       int(d["num_names"]), tuple(str(m) for m in d.get("modifiers", ())))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FundiffError(f"the text encoder's description is incomplete or corrupt ({e!r})") from None

    # -- encoding ------------------------------------------------------------------------------------------
    def lookup(self, word: str) -> list[int]:
        """Vocabulary indices of one word: its stemmed form, else two parts of a compound, else []."""
        if (i := self._word(word)) is not None:
            return [i]
        for cut in range(3, len(word) - 2):
            a, b = self._word(word[:cut]), self._word(word[cut:])
            if a is not None and b is not None:
                return [a, b]
        return []

    def _word(self, word: str) -> int | None:
        """The vocabulary index of one of ``word``'s forms, else of a vocabulary word with that stem."""
        forms = _forms(word)
        for table in (self._index, self._stems):
            for form in forms:
                if form in table:
                    return table[form]
        return None

    def tokens(self, prompt: str) -> list[int]:
        """The dimensions set by ``prompt`` ([] for the null prompt ""); no known word: FundiffError."""
        content = _content(prompt)
        if not content:
            if prompt.strip() == "":
                return []
            raise FundiffError(f"prompt {shorten(prompt)} has only filler words; name a thing (e.g. 'a rocket')")
        found = sorted({i for w in content for i in self.lookup(w)})
        if not found:
            close = [m for w in content for m in difflib.get_close_matches(w, self.words, n=5, cutoff=0.0)]
            close = sorted(set(close), key=close.index)[:5]
            raise FundiffError(
                f"prompt {shorten(prompt)} has no word the model knows; closest known words: {', '.join(close)}"
            )
        name = self.name_of(" ".join(content))
        names = [name] if name is not None else self.names_within(content)
        return found + sorted({len(self.words) + k for k in names})

    def names_within(self, content: list[str]) -> list[int]:
        """The name dimensions of the names that a prompt's content words hold as phrases, longest first from
        the left, not overlapping: "rocket ship" holds rocket and ship, "man wearing top hat" man and top hat."""
        out, i = [], 0
        while i < len(content):
            for j in range(len(content), i, -1):
                if (k := self.names.get(" ".join(content[i:j]))) is not None:
                    out.append(k)
                    i = j
                    break
            else:
                i += 1
        return out

    def name_of(self, content: str) -> int | None:
        """The name dimension (counted from the first after the words) of a prompt's content words joined by
        spaces: a name, or a name followed by one of the modifiers; else None."""
        if (name := self.names.get(content)) is not None:
            return name
        for m in self.modifiers:
            if content.endswith(" " + m) and (name := self.names.get(content[: -len(m) - 1])) is not None:
                return name
        return None

    def encode(self, prompts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """(len(prompts), dim) float32 multi-hot vectors; "" gives zeros."""
        c = torch.zeros(len(prompts), self.dim)
        for b, p in enumerate(prompts):
            c[b, self.tokens(p)] = 1.0
        return c.to(device)

    def describe(self, prompt: str) -> str:
        """The prompt as understood: its known words (the null prompt: "")."""
        return " ".join(self.words[i] for i in self.tokens(prompt) if i < len(self.words))

    def variant_table(self, texts: Sequence[Sequence[str]], names: Sequence[Sequence[str]] | None = None) -> TextTable:
        """Training texts as tensors: (start (N,), count (N,), tokens (V, L) int64 padded with ``dim``, named (N,))
        where item n's texts are rows start[n] .. start[n] + count[n] - 1 of tokens, the named[n] that set a name
        dimension first (see :func:`sample_vectors`).

        ``names`` (per item, as given to :meth:`build`): a text sets a name dimension only where it is the item's
        own: a keyword that happens to be another emoji's name ("ocean", a short name of the water wave, is a
        keyword of the surfer) trains as its words alone, so each name dimension is trained on its emoji only."""
        first = len(self.words)  # the first name dimension; a row's name dimensions come last (tokens)

        def has_name(r: list[int]) -> bool:
            return bool(r) and r[-1] >= first

        rows, start, count, named = [], [], [], []
        for n, t in enumerate(texts):
            start.append(len(rows))
            toks = [self.tokens(s) for s in t if _content(s)]
            if names is not None:
                own = {self.name_of(" ".join(_content(s))) for s in names[n]}
                toks = [[i for i in r if i < first or i - first in own] for r in toks]
            toks.sort(key=lambda r: not has_name(r))  # stable: the name texts first
            rows += toks
            count.append(len(toks))
            named.append(sum(map(has_name, toks)))
        width = max(len(r) for r in rows)
        table = torch.full((len(rows), width), self.dim, dtype=torch.int64)
        for i, r in enumerate(rows):
            table[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return torch.tensor(start), torch.tensor(count), table, torch.tensor(named)


TextTable = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # TextEncoder.variant_table


def sample_vectors(
    table: TextTable, dim: int, idx: torch.Tensor, g: torch.Generator, name_share: float = 0.0
) -> torch.Tensor:
    """(B, dim) multi-hot vectors of one training text per item ``idx`` (B,), drawn with ``g``
    (TextEncoder.variant_table) on ``idx``'s device: uniformly among the item's texts, or, with ``name_share``
    > 0, with that probability among its name texts (where it has any) and else among all of them."""
    start, count, tokens, named = (v.to(idx.device) for v in table)
    u = torch.rand(idx.shape[0], generator=g, device=idx.device)
    n = count[idx]
    if name_share > 0:
        pick_name = (torch.rand(idx.shape[0], generator=g, device=idx.device) < name_share) & (named[idx] > 0)
        n = torch.where(pick_name, named[idx], n)
    rows = start[idx] + (u * n).long().clamp_max(n - 1)
    c = torch.zeros(idx.shape[0], dim + 1, device=idx.device)
    return c.scatter_(1, tokens[rows], 1.0)[:, :dim]


def _content(text: str) -> list[str]:
    return [w for w in words_of(text) if w not in FILLER]


def _canonical(word: str, raw: set[str]) -> str:
    """A training word's vocabulary form: its singular where that is a training word too ("rockets" -> "rocket")."""
    for form in _forms(word)[1:]:
        if form in raw and (word.endswith("s") and len(form) < len(word)):
            return form
    return word


__all__ = ["DESIGNS", "FILLER", "TextEncoder", "TextTable", "sample_vectors", "words_of"]
