"""Images in and out: uint8 conversion, PNG files, grids and plots (without touching matplotlib's global state)."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fundiff import io
from fundiff.errors import FundiffError

PNG = b"\x89PNG\r\n\x1a\n"


def test_to_uint8_clamps_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.4 / 255, 0.5, 1.0, 2.0])
    assert io.to_uint8(x).tolist() == [0, 0, 0, 1, 128, 255, 255]  # round half to even: 0.5 -> 0, 127.5 -> 128
    assert io.to_uint8(x).dtype == torch.uint8


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_png_round_trips_through_pil(tmp_path, channels, mode):
    x = torch.rand(channels, 5, 7, generator=torch.Generator().manual_seed(0))
    path = io.save_png(x, tmp_path / "x.png")
    with Image.open(path) as im:
        assert im.mode == mode and im.size == (7, 5)
        arr = torch.from_numpy(np.asarray(im).copy())
    want = io.to_uint8(x)
    assert torch.equal(arr, want[0] if channels == 1 else want.permute(1, 2, 0))


def test_save_png_rejects_other_shapes_in_one_line(tmp_path):
    for bad in (torch.rand(2, 4, 4), torch.rand(1, 1, 4, 4)):
        with pytest.raises(FundiffError, match="expected a \\(C,H,W\\) image") as e:
            io.save_png(bad, tmp_path / "x.png")
        assert "\n" not in str(e.value)
    assert not (tmp_path / "x.png").exists()


def test_grid_tiles_rows_and_save_grid_upscales(tmp_path):
    images = torch.rand(5, 1, 4, 4)
    g = io.grid(images, nrow=3, padding=2)
    assert g.shape == (3, 2 + 2 * (4 + 2), 2 + 3 * (4 + 2))  # make_grid gives 3 channels, padding around each tile
    torch.testing.assert_close(g[0, 2:6, 2:6], images[0, 0])
    path = io.save_grid(images, tmp_path / "g.png", nrow=3, scale=2)
    with Image.open(path) as im:
        assert im.size == (2 * g.shape[2], 2 * g.shape[1])


def test_figures_are_png_and_leave_matplotlib_alone(tmp_path, monkeypatch):
    import matplotlib
    from matplotlib.figure import Figure

    def no_backend_switch(*args, **kwargs):
        raise AssertionError("library code must not call matplotlib.use")

    monkeypatch.setattr(matplotlib, "use", no_backend_switch)
    pyplot_before = "matplotlib.pyplot" in sys.modules
    rows = [torch.rand(3, 1, 8, 8), torch.rand(2, 3, 8, 8)]
    a = io.save_labeled_grid(rows, ["gray", "rgb"], tmp_path / "a.png", col_labels=["x", "y", "z"], title="t")
    b = io.plot_loss([1.0 / (i + 1) for i in range(120)], tmp_path / "b.png", steps_per_epoch=40)
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    c = io.save_figure(fig, tmp_path / "sub" / "c.png")
    for path in (a, b, c):
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png", "b.png", "c.png"]  # no temp files
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_before  # pyplot (and its figure registry) not imported


def test_labeled_grid_cells_are_the_images_upscaled_exactly_and_labels_take_room():
    rows = [torch.rand(3, 1, 8, 8), torch.rand(2, 3, 8, 8)]  # ragged: the second row has a blank cell
    bare = np.asarray(io.labeled_grid_image(rows, ["", ""]))
    k = io.CELL_PX // 8  # 8 px images: upscaled 10 times
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = io.MARGIN_PX + i * (8 * k + io.GAP_PX), io.MARGIN_PX + j * (8 * k + io.GAP_PX)
            cell = bare[y : y + 8 * k, x : x + 8 * k]
            want = io.to_uint8(img.expand(3, -1, -1)).permute(1, 2, 0).numpy()
            assert (cell == want.repeat(k, 0).repeat(k, 1)).all()
    assert (
        bare[io.MARGIN_PX + 8 * k + io.GAP_PX :, io.MARGIN_PX + 2 * (8 * k + io.GAP_PX) :][: 8 * k, : 8 * k] == 255
    ).all()
    labeled = io.labeled_grid_image(rows, ["gray", "rgb"], col_labels=["x", "y", "z"], title="a title")
    assert labeled.width > bare.shape[1] and labeled.height > bare.shape[0]
    assert (np.asarray(labeled) < 128).any(axis=-1)[: io.MARGIN_PX + 20].any()  # the title is drawn at the top


@pytest.mark.parametrize("b,c,nrow,padding", [(1, 1, 4, 2), (1, 3, 2, 2), (5, 1, 3, 2), (7, 3, 4, 0), (12, 1, 12, 3)])
def test_grid_is_torchvision_make_grid_bit_for_bit(b, c, nrow, padding):
    from torchvision.utils import make_grid

    g = torch.Generator().manual_seed(b * 10 + c)
    images = torch.rand(b, c, 5, 6, generator=g) * 1.4 - 0.2  # out of range too: both clamp first
    want = make_grid(images.clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    assert torch.equal(io.grid(images, nrow=nrow, padding=padding), want)
