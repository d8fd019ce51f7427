"""Any PNG/JPEG -> a model's image format (channels, size, value range), masks, and mask presets.

Resize policy (``fit``): "pad" (default) pads the shorter side to a square with the
image's background value (the median of its border) and then resizes, so nothing of the
picture is lost; "crop" center-crops to a square; "ink" crops to the drawing's bounding
box and pads it so the ink fills 20/28 of the side, centred -- MNIST's own preprocessing
(LeCun et al. 1998), the best choice for a small drawing on a big canvas. Downsizing is
antialiased bilinear.

Inversion (``invert``): MNIST and Fashion-MNIST are light on a dark background, hand drawings
are usually dark on light. "auto" inverts a single-channel target when the border of the
picture is mostly light (mean > 0.5); "always" / "never" force it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fundiff.errors import FundiffError, FundiffWarning

Fit = Literal["pad", "crop", "ink"]
FITS: tuple[str, ...] = ("pad", "crop", "ink")
Invert = Literal["auto", "always", "never"]
INVERTS: tuple[str, ...] = ("auto", "always", "never")
MASK_PRESETS: tuple[str, ...] = ("top-half", "bottom-half", "left-half", "right-half", "center")
DRAWINGS_DIR = Path(__file__).parent / "assets" / "drawings"  # shipped hand-drawn samples, by name
EMOJI_ASSETS_DIR = Path(__file__).parent / "assets" / "emoji"  # colour test images of the emoji model, by name
EMOJI_TEST_IMAGE = "tower"  # what the emoji model edits when given no image: the Campanile's part
INK_FRACTION = 20 / 28  # MNIST: digits are scaled into a 20x20 box inside 28x28
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" conversion
MAX_PIXELS = 2 * 89_478_485  # pictures above this are refused: PIL's decompression-bomb error limit (2x its warning's)
WARN_PIXELS = 89_478_485  # above this (PIL's DecompressionBombWarning limit, ~9459^2) a FundiffWarning says so
GREY_NOTICE_FRACTION = 0.01  # a mask with more of its pixels grey (neither near black nor near white) gets a notice


def drawing_names() -> list[str]:
    """Names of the shipped drawings and test images (e.g. "seven", "tower"), usable wherever an image path is."""
    return sorted(p.stem for folder in (DRAWINGS_DIR, EMOJI_ASSETS_DIR) for p in folder.glob("*.png"))


def resolve_image_path(path: str | Path) -> Path:
    """``path`` itself, or the shipped drawing of that name."""
    p = Path(path)
    if not p.exists():
        for folder in (DRAWINGS_DIR, EMOJI_ASSETS_DIR):
            if (folder / f"{path}.png").is_file():
                return folder / f"{path}.png"
    return p


def read_image(path: str | Path, *, background: float | None = None) -> Tensor:
    """Decode an image file into (C,H,W) float32 in [0, 1]; C = 1 for grayscale sources, else 3.

    Handles every PIL mode: palette and alpha images are composited over ``background``
    (1 = white, 0 = black; None: the one the ink shows on: black under light ink, else white),
    16-bit ("I;16", "I") samples are scaled by 65535, float ("F") is clamped to [0, 1], EXIF
    orientation is applied. Unreadable files raise a one-line FundiffError; so does a picture of
    more than MAX_PIXELS pixels, and one of more than WARN_PIXELS gives a FundiffWarning.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = resolve_image_path(path)
    try:
        with warnings.catch_warnings():  # fundiff's own one-line warning replaces PIL's DecompressionBombWarning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_pixels(path, *im.size)
                im.load()
                im = ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:  # PIL refuses it in open(), before _check_pixels sees its size
        _check_pixels(path, *_header_size(path))
        raise FundiffError(f"{str(path)!r} is too large for PIL to read ({e}); shrink it") from None
    except FileNotFoundError:
        raise FundiffError(f"image file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise FundiffError(f"{str(path)!r} is a folder; give an image file (PNG or JPEG)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise FundiffError(
            f"cannot read {str(path)!r} as an image ({type(e).__name__}); give a PNG or JPEG file"
        ) from None

    if im.mode.startswith("I") or im.mode == "F":
        arr = np.asarray(im).astype(np.float32)
        arr = arr / 65535.0 if im.mode != "F" else arr  # 16-bit samples (PNG's only deep grayscale)
        return torch.from_numpy(np.clip(arr, 0.0, 1.0)).reshape(1, *arr.shape[:2])
    try:
        gray = im.mode in ("1", "L", "LA", "La") or (im.mode in ("P", "PA") and _palette_is_gray(im))
        if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in im.info:
            fill = round(255 * (_ink_background(im) if background is None else background))
            base = Image.new("RGBA", im.size, (fill, fill, fill, 255))
            im = Image.alpha_composite(base, im.convert("RGBA"))
        im = im.convert("L" if gray else "RGB")
    except (ValueError, OSError) as e:
        raise FundiffError(
            f"cannot convert {str(path)!r} (mode {im.mode}) to grayscale or RGB ({e}); save it as an RGB PNG"
        ) from None
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).reshape(im.size[1], im.size[0], -1).permute(2, 0, 1).contiguous()


def _check_pixels(path: Path, width: int, height: int) -> None:
    """A FundiffError for a picture of more than MAX_PIXELS pixels, a FundiffWarning above WARN_PIXELS."""
    pixels = width * height
    if pixels > MAX_PIXELS:
        raise FundiffError(
            f"{str(path)!r} is {width}x{height} ({pixels / 1e6:.0f} megapixels), more than the {MAX_PIXELS / 1e6:.0f} "
            "megapixels fundiff reads; shrink it (the models see 28x28 or 64x64 anyway)"
        )
    if pixels > WARN_PIXELS:
        warnings.warn(
            f"{str(path)!r} is {width}x{height} ({pixels / 1e6:.0f} megapixels): decoding it takes about "
            f"{4 * pixels / 2**30:.1f} GiB; a smaller copy reads faster",
            FundiffWarning,
            stacklevel=3,
        )


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, by PIL's format plugins directly (Image.open refuses to give the
    size of a picture above its decompression-bomb limit)."""
    from PIL import Image

    Image.init()
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(prefix):
                continue
            try:
                fp.seek(0)
                return factory(fp, str(path)).size
            except (SyntaxError, OSError, ValueError, IndexError):
                continue
    raise FundiffError(f"cannot read {str(path)!r} as an image (no format recognises it); give a PNG or JPEG file")


def _ink_background(im) -> float:
    """The background an image with transparency is flattened on: 0 (black) where its visible pixels are light
    on average (white ink on a transparent canvas), else 1 (white); what makes the ink visible."""
    import numpy as np

    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3]
    if alpha.sum() == 0:
        return 1.0
    luma = rgba[..., :3] @ np.asarray(_LUMA, dtype=np.float32)
    return 0.0 if float((luma * alpha).sum() / alpha.sum()) > 0.5 else 1.0


def _palette_is_gray(im) -> bool:
    rgb = im.convert("RGB")
    r, g, b = rgb.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


def _border(img: Tensor) -> Tensor:
    """The outer ring of img (C,H,W), about 5% of the shorter side wide: (C, N) values."""
    h, w = img.shape[-2:]
    k = max(1, round(0.05 * min(h, w)))
    inner = torch.zeros(h, w, dtype=torch.bool)
    inner[k : h - k, k : w - k] = True
    return img[:, ~inner]


def _to_channels(img: Tensor, channels: int) -> Tensor:
    if img.shape[0] == channels:
        return img
    if channels == 1:
        return (torch.tensor(_LUMA).reshape(3, 1, 1) * img).sum(0, keepdim=True)
    if channels == 3:
        return img.expand(3, -1, -1).clone()
    raise FundiffError(f"cannot convert images to {channels} channels; models take 1 (grayscale) or 3 (RGB)")


def _square(img: Tensor, fit: Fit, background: Tensor) -> Tensor:
    """Make img (C,H,W) square by padding with ``background`` (C,), cropping, or boxing its ink."""
    c, h, w = img.shape
    if fit == "crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return img[:, top : top + s, left : left + s]
    s = max(h, w)
    if fit == "ink":
        ink = (img - background.reshape(c, 1, 1)).abs().amax(0) > 0.2
        if ink.any():
            rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
            img = img[:, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
            c, h, w = img.shape
            s = max(round(max(h, w) / INK_FRACTION), 1)
    canvas = background.reshape(c, 1, 1).expand(c, s, s).clone()
    top, left = (s - h) // 2, (s - w) // 2
    canvas[:, top : top + h, left : left + w] = img
    return canvas


def _resize(img: Tensor, size: int) -> Tensor:
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(
        0, 1
    )


def to_model_format(
    img: Tensor,
    *,
    channels: int = 1,
    image_size: int = 28,
    value_range: tuple[float, float] = (0.0, 1.0),
    fit: Fit = "pad",
    invert: Invert = "auto",
) -> Tensor:
    """An image (C,H,W) in [0, 1] -> (1, channels, image_size, image_size) in ``value_range``.

    See the module docstring for ``fit`` and ``invert``.
    """
    if fit not in FITS:
        raise FundiffError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    if invert not in INVERTS:
        raise FundiffError(f"unknown invert option {invert!r}; choose one of {', '.join(INVERTS)}")
    img = _to_channels(img.float(), channels)
    if invert == "always" or (invert == "auto" and channels == 1 and float(_border(img).mean()) > 0.5):
        img = 1.0 - img
    background = _border(img).median(dim=1).values
    img = _resize(_square(img, fit, background), image_size)
    lo, hi = value_range
    return (lo + (hi - lo) * img)[None]


def load_image(
    path: str | Path,
    *,
    channels: int = 1,
    image_size: int = 28,
    value_range: tuple[float, float] = (0.0, 1.0),
    fit: Fit = "pad",
    invert: Invert = "auto",
) -> Tensor:
    """Read a PNG/JPEG (any size or mode) as (1, channels, image_size, image_size) float32 in ``value_range``."""
    return to_model_format(
        read_image(path), channels=channels, image_size=image_size, value_range=value_range, fit=fit, invert=invert
    )


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, without decoding it."""
    from PIL import Image

    path = resolve_image_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError:
        return _header_size(path)
    except FileNotFoundError:
        raise FundiffError(f"image file {str(path)!r} not found") from None
    except Exception as e:  # PIL raises several types for unreadable files
        raise FundiffError(
            f"cannot read {str(path)!r} as an image ({type(e).__name__}); give a PNG or JPEG file"
        ) from None


def load_mask(
    path: str | Path,
    *,
    image_size: int = 28,
    fit: Literal["pad", "crop"] = "pad",
    like: str | Path | tuple[int, int] | None = None,
    refit: bool = False,
    threshold: float = 0.5,
) -> Tensor:
    """Read an inpainting mask as (1, 1, image_size, image_size) float32 of 0/1: light (> threshold) = 1 = fill in.

    Transparent pixels count as 0 (keep). A mask that is not black-and-white (more than 1% of its pixels
    grey, between 0.1 and 0.9) is binarised all the same, with a FundiffWarning saying how much it fills.
    ``fit`` must be the one used for the image ("ink"
    depends on the image's content, so masks cannot follow it). ``like`` is the image the mask
    belongs to (its file, or its (width, height)): a mask of another size would be stretched
    out of line with it, so it is an error unless ``refit`` (then the mask is made square with
    ``fit`` and resized like any image). A mask with no pixel to fill is an error.
    """
    if fit not in ("pad", "crop"):
        raise FundiffError(f"masks take fit 'pad' or 'crop', got {fit!r}; load the image with the same fit")
    if like is not None and not refit:
        (mw, mh), (iw, ih) = image_size_of(path), (like if isinstance(like, tuple) else image_size_of(like))
        if (mw, mh) != (iw, ih):
            what = f"image {str(like)!r}" if not isinstance(like, tuple) else "the image"
            raise FundiffError(
                f"mask {str(path)!r} is {mw}x{mh} but {what} is {iw}x{ih}; draw the mask on a canvas of the "
                "image's size, or ask to fit it anyway (refit=True, the CLI's --mask-fit)"
            )
    img = _to_channels(read_image(path, background=0.0), 1)
    grey = float(((img > 0.1) & (img < 0.9)).float().mean())
    if grey > GREY_NOTICE_FRACTION:
        warnings.warn(
            f"mask {str(path)!r} is not black-and-white ({grey:.0%} of its pixels are grey): binarised, lighter than "
            f"{threshold:g} = fill in ({float((img > threshold).float().mean()):.0%} of it)",
            FundiffWarning,
            stacklevel=2,
        )
    img = _resize(_square(img, fit, torch.zeros(1)), image_size)
    mask = (img > threshold).float()[None]
    if not mask.any():
        raise FundiffError(
            f"mask {str(path)!r} has no pixel to fill (none lighter than {threshold:g} at {image_size}x{image_size}); "
            "paint the region to fill in white"
        )
    return mask


def mask_preset(name: str, image_size: int = 28) -> Tensor:
    """A preset mask (1, 1, S, S) of 0/1, 1 = fill in: top-half, bottom-half, left-half, right-half, center."""
    s, h = image_size, image_size // 2
    m = torch.zeros(1, 1, s, s)
    if name == "top-half":
        m[..., :h, :] = 1
    elif name == "bottom-half":
        m[..., h:, :] = 1
    elif name == "left-half":
        m[..., :, :h] = 1
    elif name == "right-half":
        m[..., :, h:] = 1
    elif name == "center":
        q = s // 4
        m[..., q : s - q, q : s - q] = 1
    else:
        raise FundiffError(f"unknown mask preset {name!r}; choose one of {', '.join(MASK_PRESETS)}")
    return m


def dataset_image(
    dataset: str,
    index: int = 0,
    *,
    channels: int = 1,
    image_size: int = 28,
    value_range: tuple[float, float] = (0.0, 1.0),
    data_dir: str | Path | None = None,
) -> Tensor:
    """Test image ``index`` of ``dataset`` as (1, channels, S, S) float32 in ``value_range``: what every command
    edits when given no image (MNIST test 0 is a 7; the emoji, which have no test split: the shipped
    :data:`EMOJI_TEST_IMAGE`). The model's geometry must match the dataset's."""
    from fundiff import data

    if dataset == "emoji":
        if index != 0:
            raise FundiffError("the emoji model has one test image; drop --index or pass --image")
        path = EMOJI_ASSETS_DIR / f"{EMOJI_TEST_IMAGE}.png"
        return load_image(path, channels=channels, image_size=image_size, value_range=value_range, invert="never")

    x_test, _ = data.load_split(dataset, data_dir, train=False)
    if not 0 <= index < len(x_test):
        raise FundiffError(f"--index must be in 0..{len(x_test) - 1}, got {index}")
    x = data.to_unit_float(x_test[index : index + 1])
    if x.shape[-1] != image_size or channels != x.shape[1]:
        raise FundiffError(
            f"the model takes {channels}x{image_size}x{image_size} images but {dataset} has "
            f"{x.shape[1]}x{x.shape[-1]}x{x.shape[-1]}; pass --image"
        )
    lo, hi = value_range
    return lo + (hi - lo) * x
