"""The tabs' inputs, saved into the run folder and read back exactly as the CLI reads --image / --mask:
drawings, uploads, test images, painted masks."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from fundiff import images, io
from fundiff.backends import runs
from fundiff.errors import FundiffError
from fundiff.ui import pad
from fundiff.ui.pictures import _unit

if TYPE_CHECKING:
    from fundiff.ui.app import App


def whole(value, what: str, low: int, high: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise FundiffError(f"{what} must be a whole number in {low}..{high}, got {value!r}") from None
    if not low <= n <= high:
        raise FundiffError(f"{what} must be in {low}..{high}, got {n}")
    return n


def copy_upload(upload: str | None, folder: Path) -> Path:
    """The uploaded file copied into the run folder as input.EXT, checked to be an image fundiff reads."""
    if not upload:
        raise FundiffError("no file uploaded: upload a PNG or JPEG (or choose another source)")
    src = Path(upload)
    suffix = src.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", src.suffix.lower()) else ".png"
    dest = folder / f"input{suffix}"
    shutil.copyfile(src, dest)
    try:
        images.read_image(dest)
    except FundiffError:
        raise FundiffError(f"the upload {src.name!r} is not an image fundiff can read; upload a PNG or JPEG") from None
    return dest


# -- the tabs' inputs: drawings, uploads, test images, painted masks -----------------------------------
def save_drawing(value: str | None, folder: Path) -> Path:
    """The pad's drawing (ui/pad.py: a PNG data URL, dark on white) as folder/input.png; an empty canvas is an
    error."""
    composite = pad.decode(value, "drawing")
    if composite is None or int(np.asarray(composite.convert("L")).min()) > 250:
        raise FundiffError("the canvas is empty: draw a digit (or upload an image and choose 'upload')")
    path = folder / "input.png"
    composite.convert("RGB").save(path)
    return path


def painted_mask(value: str | None, folder: Path, image_size: int) -> Path:
    """The strokes painted over the image (the mask pad's value, ui/pad.py: strokes on transparent) as a 0/1 mask
    of the model's size, written to folder/mask.png (white = fill in) the way ``--mask`` reads it; nothing painted
    is an error."""
    from PIL import Image

    strokes = pad.decode(value, "mask")
    alpha = None if strokes is None else np.asarray(strokes.convert("RGBA"))[..., 3] > 0
    if alpha is None or not alpha.any():
        raise FundiffError("the mask is empty: paint over the part of the image to fill in (or choose a preset mask)")
    painted = folder / "painted.png"
    Image.fromarray(alpha.astype(np.uint8) * 255, "L").save(painted)
    try:
        mask = images.load_mask(painted, image_size=image_size, fit="pad")
    except FundiffError:
        raise FundiffError(
            f"the painted mask covers no pixel at {image_size}x{image_size}: paint a larger region"
        ) from None
    path = folder / "mask.png"
    io.save_png(mask[0], path)
    return path


class scratch:
    """A throw-away folder under the app's ``out`` (the mask pad's background, the live runs), removed afterwards."""

    def __init__(self, app: App) -> None:
        self.folder = app.config.out / ".preview" / f"{threading.get_ident()}-{time.monotonic_ns()}"

    def __enter__(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def inpaint_image(app: App, model: str, source: str, index, upload, folder: Path) -> tuple[Tensor, list[str]]:
    """The image to inpaint (1,C,S,S) in the model's range, as folder/input.png, and the CLI flags that read it.

    A test image is saved as it is (uint8, the model's size: exact; the CLI's ``--index``). An upload is
    brought to the model's format (pad, auto-invert) and saved at that size, so the mask is painted on what
    the model sees and ``--image input.png --invert never`` reads the very same pixels back.
    """
    den, path = app.denoiser(model), folder / "input.png"
    if source == "upload":
        raw = copy_upload(upload, folder)
        x = images.load_image(raw, channels=den.channels, image_size=den.image_size, value_range=den.value_range)
        io.save_png(_unit(x, den.value_range)[0], path)
        flags = ["--image", str(path), "--invert", "never"]
    else:
        x_test = test_images(app, model)
        i = whole(index, "the test image index", 0, len(x_test) - 1)
        io.save_png((x_test[i] if x_test.ndim == 4 else x_test[i : i + 1]).float().div(255), path)
        flags = ["--index", str(i)]
    x_0 = images.load_image(
        path, channels=den.channels, image_size=den.image_size, value_range=den.value_range, invert="never"
    )
    return x_0.to(den.device), flags


def test_images(app: App, model: str) -> Tensor:
    """The test split (N,H,W) uint8 of the dataset the model was trained on; for the emoji, which have none, the
    shipped test image (1,3,S,S) (images.dataset_image). Read once per model (live inpainting reads it on every
    stroke)."""
    return app.kept(("test images", model), lambda: _read_test_images(app, model))


def _read_test_images(app: App, model: str) -> Tensor:
    from fundiff import data
    from fundiff.checkpoints import load_config

    den = app.denoiser(model)
    try:
        dataset = runs.dataset_of(load_config(runs.resolve(model)))
    except FundiffError:
        raise FundiffError(f"{model} has no test dataset to take an image from; choose 'upload'") from None
    if dataset == "emoji":
        x = images.dataset_image(dataset, 0, channels=den.channels, image_size=den.image_size)
        return x.mul(255).round().to(torch.uint8)
    x_test, _ = data.load_split(dataset, app.config.data_dir, train=False)
    if x_test.shape[-1] != den.image_size or den.channels != 1:
        raise FundiffError(f"{dataset}'s test images do not fit {model}; choose 'upload'")
    return x_test
