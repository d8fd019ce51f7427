"""The emoji dataset: Noto Color Emoji images with their texts, for fundiff's text-to-image model.

Sources (npm, pinned by version, size and SHA-256 of the package tarball):

- ``emoji-datasource-google@16.0.0`` (package MIT; the Noto Color Emoji images Apache-2.0): 64x64 RGBA
  PNGs (``img/google/64/``) with each emoji's Unicode name, short names and skin-tone variations
  (``emoji.json``);
- ``emojibase-data@16.0.3`` (MIT): each emoji's CLDR label and keywords (``en/data.json``).

:func:`fetch` builds ``<data dir>/emoji/`` from them once: ``emoji-64.safetensors`` (``images``: uint8
(N, 3, 64, 64), the RGBA images composited on :data:`BACKGROUND`), ``emoji.json`` (the background, and per
image its emoji's name, short names, keywords and skin tone) and ``NOTICE.txt`` (the licences). What is kept:
every emoji except country and subdivision flags (259 + 3 near-identical rectangles) and the five skin-tone
swatches, plus every single-tone skin variation: 3,224 images of 1,643 emoji. :func:`load` gives them at 32,
48 or 64 pixels (area downsampling); the resolution and the grey background were chosen by measurement
(``benchmarks/emoji_format.py``, README "Text to image on a CPU").
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from fundiff.errors import FundiffError

IMAGES_PACKAGE = "emoji-datasource-google@16.0.0"
KEYWORDS_PACKAGE = "emojibase-data@16.0.3"
TARBALLS: dict[str, tuple[int, str]] = {  # npm pack file name -> (bytes, sha256)
    "emoji-datasource-google-16.0.0.tgz": (
        74344091,
        "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
    ),
    "emojibase-data-16.0.3.tgz": (6487905, "cab288279075778f15b37f3ca60dfb17759af6fe29758e07338e248879991689"),
}
RESOLUTIONS = (32, 48, 64)
DEFAULT_RESOLUTION = 32
# mid grey: 1.6% of the emoji's opaque pixels lie within 0.1 of it, against 8.1% for white (eyes, teeth, snow,
# skulls vanish into it) and 1.5% for black (benchmarks/emoji_format.py, README "Text to image on a CPU")
BACKGROUND = (128, 128, 128)
SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}
DROPPED_SUBCATEGORIES = ("country-flag", "subdivision-flag", "skin-tone")
NPM_TIMEOUT_S = 600.0
# the write-up's prompts where an emoji fits, and a few more: what the emoji model shows when given none
DEFAULT_PROMPTS = (
    "a rocket ship",
    "a man wearing a top hat",
    "a snowy mountain",
    "an old man",
    "a campfire",
    "a skull",
    "a water wave",
    "a cat face",
    "a dog",
    "a pizza",
)
FOLDER = "emoji"
NOTICE = """The emoji images are Noto Color Emoji (Google), Apache License 2.0:
https://github.com/googlefonts/noto-emoji/blob/main/LICENSE -- taken from the npm package
emoji-datasource-google@16.0.0 (MIT License, Copyright (c) 2017-2019 Miles Johnson; images as above), and
composited on grey and downsampled by fundiff. The keywords are from emojibase-data@16.0.3
(MIT License, Copyright (c) 2017-2019 Miles Johnson), from the Unicode CLDR annotations
(Unicode License).
"""


@dataclass(frozen=True)
class Emoji:
    """One image's texts: its emoji's Unicode name ("OLDER MAN"), short names ("older_man"), CLDR label and
    keywords, and the skin tone of a variation ("" for the base emoji)."""

    name: str
    short_names: tuple[str, ...]
    label: str
    keywords: tuple[str, ...]
    skin_tone: str = ""
    code: str = ""  # its code points, e.g. "1F474-1F3FB"

    def title(self) -> str:
        """A readable name: "older man, light skin tone"."""
        base = self.label or self.name.lower()
        return f"{base}, {self.skin_tone}" if self.skin_tone else base

    def names(self) -> list[str]:
        """Its emoji's names (shared by its skin-tone variations): Unicode name, CLDR label, short names."""
        return [self.name.lower(), self.label or self.name.lower(), *(s.replace("_", " ") for s in self.short_names)]

    def texts(self) -> list[str]:
        """Its training texts (text.TextEncoder): its names, then each keyword alone; a skin-tone variation's
        each with its tone ("older man, dark skin tone")."""
        names = self.names()
        texts = names + [k for k in self.keywords if k not in names]
        return [f"{t}, {self.skin_tone}" for t in texts] if self.skin_tone else texts

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "short_names": list(self.short_names),
            "label": self.label,
            "keywords": list(self.keywords),
            "skin_tone": self.skin_tone,
            "code": self.code,
        }


def folder(root: str | Path | None = None) -> Path:
    from fundiff.data import default_data_dir

    return (Path(root).expanduser() if root is not None else default_data_dir()) / FOLDER


def is_fetched(root: str | Path | None = None) -> bool:
    d = folder(root)
    if not (d / "emoji-64.safetensors").is_file() or not (d / "emoji.json").is_file():
        return False
    try:  # built on another background (an older fundiff): rebuilt
        return json.loads((d / "emoji.json").read_text()).get("background") == list(BACKGROUND)
    except (OSError, ValueError, AttributeError):
        return False


def fetch(root: str | Path | None = None, *, tarball_dir: str | Path | None = None) -> Path:
    """Make the emoji dataset available in ``<root>/emoji`` (see the module docstring); returns that folder.

    The two npm tarballs come from ``tarball_dir`` if it holds them, else from ``npm pack``; each is checked
    (size and SHA-256) before anything is read from it. The folder is built in a temporary sibling and
    moved into place whole."""
    dest = folder(root)
    if is_fetched(root):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".emoji-") as tmp:
        tarballs = _tarballs(Path(tarball_dir) if tarball_dir else None, Path(tmp))
        images, items = _build(tarballs)
        stage = Path(tmp) / "emoji"
        stage.mkdir()
        from safetensors.torch import save_file

        save_file({"images": images}, str(stage / "emoji-64.safetensors"))
        index = {"background": list(BACKGROUND), "items": [e.to_dict() for e in items]}
        (stage / "emoji.json").write_text(json.dumps(index, indent=0))
        (stage / "NOTICE.txt").write_text(NOTICE)
        if dest.exists():
            shutil.rmtree(dest)
        stage.rename(dest)
    print(f"fundiff: emoji ({len(items)} images) from npm {IMAGES_PACKAGE} and {KEYWORDS_PACKAGE} -> {dest}",
          file=sys.stderr)  # fmt: skip
    return dest


def _tarballs(given: Path | None, tmp: Path) -> dict[str, Path]:
    """The verified npm tarballs: from ``given`` where present, else ``npm pack`` into ``tmp``."""
    out = {}
    for name, package in zip(TARBALLS, (IMAGES_PACKAGE, KEYWORDS_PACKAGE), strict=True):
        path = given / name if given is not None else None
        if path is None or not path.is_file():
            path = _npm_pack(package, tmp)
        _verify(path, name)
        out[name] = path
    return out


def _npm_pack(package: str, where: Path) -> Path:
    """fundiff.data.npm_pack, its failure as a one-line FundiffError that says how to get the dataset."""
    from fundiff.data import _Unavailable, npm_pack

    if shutil.which("npm") is None:
        raise FundiffError("the emoji dataset is not cached and npm is not installed: install npm and run "
                           "`fundiff data fetch emoji` again")  # fmt: skip
    try:
        return npm_pack(package, where, NPM_TIMEOUT_S)
    except _Unavailable as e:
        raise FundiffError(
            f"could not download the emoji dataset ({e}); when online, run `fundiff data fetch emoji`"
        ) from None


def _verify(path: Path, name: str) -> None:
    size, sha = TARBALLS[name]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if path.stat().st_size != size or h.hexdigest() != sha:
        raise FundiffError(
            f"{path} is not the pinned {name} (size {path.stat().st_size}, expected {size}; or its SHA-256 differs): "
            "delete it and run `fundiff data fetch emoji` again"
        )


def _build(tarballs: dict[str, Path]) -> tuple[torch.Tensor, list[Emoji]]:
    """(uint8 (N, 3, 64, 64) on BACKGROUND, their Emoji) from the two verified tarballs."""
    from PIL import Image

    images_tgz, keywords_tgz = (tarballs[n] for n in TARBALLS)
    with tarfile.open(keywords_tgz, "r:gz") as tar:
        base = json.load(tar.extractfile("package/en/data.json"))
    cldr = {_key(e["hexcode"]): e for e in base}
    rows, items = [], []
    with tarfile.open(images_tgz, "r:gz") as tar:
        meta = json.load(tar.extractfile("package/emoji.json"))
        members = {m.name: m for m in tar.getmembers() if m.name.startswith("package/img/google/64/")}
        for e in sorted(meta, key=lambda e: e["sort_order"]):
            if e["subcategory"] in DROPPED_SUBCATEGORIES or not e.get("has_img_google"):
                continue
            info = cldr.get(_key(e["unified"]), {})
            variants = [("", e["image"], e["unified"])]
            variants += [
                (SKIN_TONES[k], v["image"], v["unified"])
                for k, v in (e.get("skin_variations") or {}).items()
                if k in SKIN_TONES and v.get("has_img_google")
            ]
            for tone, image, code in variants:
                member = members.get(f"package/img/google/64/{image}")
                if member is None:
                    continue
                rgba = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
                rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
                if rgb.size != (64, 64):
                    rgb = rgb.resize((64, 64), Image.Resampling.BOX)
                rows.append(torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(64, 64, 3))
                items.append(
                    Emoji(
                        name=e["name"],
                        short_names=tuple(e["short_names"]),
                        label=info.get("label", ""),
                        keywords=tuple(info.get("tags", ())),
                        skin_tone=tone,
                        code=code,
                    )
                )
    return torch.stack(rows).permute(0, 3, 1, 2).contiguous(), items


def _key(code: str) -> str:
    """Code points without variation selectors, upper case: how the two packages' codes are matched."""
    return "-".join(p for p in code.upper().split("-") if p != "FE0F")


def load(root: str | Path | None = None, *, resolution: int = DEFAULT_RESOLUTION) -> tuple[torch.Tensor, list[Emoji]]:
    """(images uint8 (N, 3, R, R), their Emoji) at ``resolution`` (32, 48 or 64; area downsampling of the 64s).

    Not fetched yet: a one-line error that says how to fetch it."""
    if resolution not in RESOLUTIONS:
        raise FundiffError(f"emoji resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {resolution}")
    if not is_fetched(root):
        raise FundiffError(
            f"the emoji dataset is not in {folder(root)}: run `fundiff data fetch emoji` (npm downloads about 80 MB)"
        )
    from safetensors.torch import load_file

    d = folder(root)
    images = load_file(str(d / "emoji-64.safetensors"))["images"]
    items = [Emoji(**{**e, "short_names": tuple(e["short_names"]), "keywords": tuple(e["keywords"])})
             for e in json.loads((d / "emoji.json").read_text())["items"]]  # fmt: skip
    if images.shape[0] != len(items) or images.shape[1:] != (3, 64, 64):
        raise FundiffError(f"{d} is incomplete or corrupt: delete it and run `fundiff data fetch emoji` again")
    return resize(images, resolution), items


def identities(items: list[Emoji]) -> tuple[torch.Tensor, list[str]]:
    """(labels int64 (N,), names): each image's emoji, numbered in order of first appearance, its skin-tone
    variations sharing their emoji's label; names[k] is emoji k's Unicode name (the classes of the emoji
    classifier, fundiff.training.classifier)."""
    index: dict[str, int] = {}
    labels = [index.setdefault(e.name, len(index)) for e in items]
    return torch.tensor(labels, dtype=torch.int64), list(index)


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> uint8 (N, 3, R, R) by area averaging (antialiased for a non-integer factor)."""
    if images.shape[-1] == resolution:
        return images
    x = images.float()
    if images.shape[-1] % resolution == 0:
        x = torch.nn.functional.avg_pool2d(x, images.shape[-1] // resolution)
    else:
        x = torch.nn.functional.interpolate(x, size=resolution, mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


__all__ = [
    "BACKGROUND",
    "DEFAULT_RESOLUTION",
    "Emoji",
    "RESOLUTIONS",
    "fetch",
    "identities",
    "is_fetched",
    "load",
    "resize",
]
