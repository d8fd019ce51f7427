import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fundiff import images
from fundiff.errors import FundiffError


def _drawing(size=(300, 200), mode="L", ink=0, paper=255):
    """A dark-on-light '+' sign, thick strokes, on a canvas of ``size``."""
    im = Image.new("L", size, paper)
    d = ImageDraw.Draw(im)
    w, h = size
    d.line([(w // 2, h // 5), (w // 2, 4 * h // 5)], fill=ink, width=max(3, h // 12))
    d.line([(w // 2 - h // 3, h // 2), (w // 2 + h // 3, h // 2)], fill=ink, width=max(3, h // 12))
    return im.convert(mode) if mode != "L" else im


def _check_mnist_like(x, channels=1, size=28):
    assert x.shape == (1, channels, size, size) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    border = torch.cat(
        [x[..., :2, :].flatten(), x[..., -2:, :].flatten(), x[..., :, :2].flatten(), x[..., :, -2:].flatten()]
    )
    assert border.mean() < 0.05  # dark background, as MNIST
    assert x.max() > 0.8  # bright strokes


def test_large_rgba_drawing_becomes_white_on_black_28x28(tmp_path):
    rgba = Image.new("RGBA", (640, 480), (0, 0, 0, 0))  # transparent background: composited on white
    ImageDraw.Draw(rgba).line([(320, 80), (320, 400)], fill=(0, 0, 0, 255), width=40)
    rgba.save(tmp_path / "a.png")
    x = images.load_image(tmp_path / "a.png")
    _check_mnist_like(x)
    assert x[0, 0, :, 13:15].mean() > 0.3 and x[0, 0, :, :10].max() < 0.05  # the stroke is in the middle columns only


def test_jpeg_rgb_black_on_white_is_inverted(tmp_path):
    _drawing((500, 375), mode="RGB").save(tmp_path / "d.jpg", quality=85)
    _check_mnist_like(images.load_image(tmp_path / "d.jpg"))


@pytest.mark.parametrize("mode", ["P", "1", "LA", "I;16", "I", "CMYK"])
def test_other_modes(tmp_path, mode):
    im = _drawing((120, 120))
    if mode in ("I;16", "I"):  # 16-bit samples; PNG stores I;16, TIFF stores 32-bit I
        arr = np.asarray(im).astype(np.uint16) * 257
        im = Image.fromarray(arr) if mode == "I;16" else Image.fromarray(arr.astype(np.int32))
        path = tmp_path / ("d.png" if mode == "I;16" else "d.tif")
        assert im.mode == mode
    elif mode == "CMYK":
        im, path = im.convert("CMYK"), tmp_path / "d.jpg"
    else:
        im, path = im.convert(mode), tmp_path / "d.png"
    im.save(path)
    _check_mnist_like(images.load_image(path))


def test_white_on_black_is_not_inverted_and_invert_can_be_forced(tmp_path):
    _drawing(ink=255, paper=0).save(tmp_path / "w.png")
    _check_mnist_like(images.load_image(tmp_path / "w.png"))
    _drawing().save(tmp_path / "b.png")
    kept = images.load_image(tmp_path / "b.png", invert="never")
    assert kept[..., :2, :].mean() > 0.95
    assert images.load_image(tmp_path / "w.png", invert="always")[..., :2, :].mean() > 0.95


def test_fit_pad_crop_ink(tmp_path):
    im = Image.new("L", (400, 100), 255)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, 7, 99], fill=0)  # bars at the left and right ends
    d.rectangle([392, 0, 399, 99], fill=0)
    d.line([(0, 50), (399, 50)], fill=0, width=6)  # and a line across the middle
    im.save(tmp_path / "wide.png")
    padded = images.load_image(tmp_path / "wide.png", invert="never", fit="pad")
    assert padded[0, 0, :8].mean() > 0.95  # padded with the (white) background above
    assert padded[0, 0, 12:16, 0].mean() < 0.5  # the bars are kept
    cropped = images.load_image(tmp_path / "wide.png", invert="never", fit="crop")
    assert cropped[0, 0, :10, 0].mean() > 0.95 and cropped[0, 0, 14].mean() < 0.5  # bars cut off, middle line kept
    dot = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(dot).ellipse([10, 10, 40, 40], fill=0)  # a small blob in a corner
    dot.save(tmp_path / "dot.png")
    boxed = images.load_image(tmp_path / "dot.png", fit="ink")
    ink = boxed[0, 0] > 0.5
    rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
    assert (
        17 <= rows[-1] - rows[0] + 1 <= 21 and abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1
    )  # MNIST's 20 px box, centred
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1


def test_value_range_and_channels(tmp_path):
    _drawing().save(tmp_path / "b.png")
    x = images.load_image(tmp_path / "b.png", channels=3, image_size=64, value_range=(-1.0, 1.0), invert="never")
    assert x.shape == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1 and x.min() < -0.5
    assert torch.equal(x[:, 0], x[:, 1])


def test_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    for path, match in [
        (tmp_path / "notes.png", "cannot read"),
        (tmp_path / "missing.png", "not found"),
        (tmp_path, "folder"),
    ]:
        with pytest.raises(FundiffError, match=match) as e:
            images.load_image(path)
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="pad, crop, ink"):
        images.to_model_format(torch.zeros(1, 5, 5), fit="stretch")


def test_masks_are_binary_and_checked(tmp_path):
    m = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent = keep
    ImageDraw.Draw(m).rectangle([0, 0, 199, 99], fill=(255, 255, 255, 255))  # white top half = fill in
    m.save(tmp_path / "m.png")
    mask = images.load_mask(tmp_path / "m.png")
    assert mask.shape == (1, 1, 28, 28) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask, images.mask_preset("top-half"))
    _drawing((300, 200)).save(tmp_path / "wide.png")
    with pytest.raises(FundiffError, match="draw the mask on a canvas") as e:
        images.load_mask(tmp_path / "m.png", like=tmp_path / "wide.png")
    assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="200x200 but the image is 28x28"):  # same shape, other size
        images.load_mask(tmp_path / "m.png", like=(28, 28))
    assert torch.equal(images.load_mask(tmp_path / "m.png", like=(28, 28), refit=True), mask)  # asked to fit
    assert torch.equal(images.load_mask(tmp_path / "m.png", like=(200, 200)), mask)
    fitted = images.load_mask(tmp_path / "m.png", like=tmp_path / "wide.png", refit=True)
    assert fitted.shape == (1, 1, 28, 28) and 0 < fitted.mean() < 1
    for fill in (0, 100):  # black, or too dark to count after binarisation
        Image.new("L", (28, 28), fill).save(tmp_path / "empty.png")
        with pytest.raises(FundiffError, match="no pixel to fill") as e:
            images.load_mask(tmp_path / "empty.png")
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="pad"):
        images.load_mask(tmp_path / "m.png", fit="ink")


def test_mask_presets():
    for name in images.MASK_PRESETS:
        m = images.mask_preset(name, 28)
        assert m.shape == (1, 1, 28, 28) and 0 < m.mean() < 1
    assert images.mask_preset("center")[0, 0, 14, 14] == 1 and images.mask_preset("center")[0, 0, 0, 0] == 0
    with pytest.raises(FundiffError, match="top-half"):
        images.mask_preset("middle")


def test_shipped_drawings_load_as_mnist_like_digits():
    assert {"two", "seven", "four", "shirt", "tower", "sun-drawing"} <= set(images.drawing_names())
    for name in images.drawing_names():
        if not (images.EMOJI_ASSETS_DIR / f"{name}.png").is_file():  # the emoji model's colour images aside
            _check_mnist_like(images.load_image(name))
    tower = images.load_image("tower", channels=3, image_size=32, invert="never")
    assert tower.shape == (1, 3, 32, 32) and abs(float(tower[0, :, 0, 0].mean()) - 128 / 255) < 0.01
