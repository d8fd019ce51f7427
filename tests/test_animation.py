"""Sampling animations: one frame per step, x_t beside x̂_0, the same bytes for the same seed, on every sampler."""

import io

import pytest
import torch
from PIL import Image, ImageSequence

from fundiff import cli, samplers
from fundiff import timesteps as ts
from fundiff.animation import Recorder
from helpers import synthetic_data, tiny_runs, tiny_unet


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory.mktemp("runs"), synthetic_data(32))


def test_the_recorder_watches_without_changing_the_samples():
    den = tiny_unet()
    steps = ts.strided(20, steps=5)
    cond = den.encode(["3", "7"])
    plain = samplers.sample_from_noise(den, cond, steps, generator=torch.Generator().manual_seed(0))
    rec = Recorder()
    watched = samplers.sample_from_noise(den, cond, steps, generator=torch.Generator().manual_seed(0), on_step=rec)
    assert torch.equal(plain, watched) and len(rec.frames) == 5
    x_t, x0 = rec.frames[-1]
    assert x_t.shape == x0.shape == (2, 1, 28, 28) and 0 <= float(x_t.min()) and float(x_t.max()) <= 1


def test_repeated_frames_are_merged_into_one_longer_frame():
    rec = Recorder()
    a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    for x in (a, a, a, b):
        rec(0, 0, 0, x, x)
    im = Image.open(io.BytesIO(rec.gif_bytes(nrow=1)))
    durations = [frame.info["duration"] for frame in ImageSequence.Iterator(im)]
    assert durations == [3 * 80, 80 + 1500]  # the last frame stays a while


@pytest.mark.parametrize("command", [["generate", "--prompt", "3", "7", "--n", "2"], ["anagram"],
                                     ["inpaint", "--image", "seven", "--prompt", "9"],
                                     ["sdedit", "--image", "seven", "--i-start", "1", "3"]])  # fmt: skip
def test_animate_writes_a_gif_beside_the_png_with_a_frame_per_step(runs, tmp_path, capsys, command):
    argv = [*command, "--model", str(runs["class"]), "--steps", "4", "--animate"]
    assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    gifs = list((tmp_path / "a").glob("*.gif"))
    assert len(gifs) == 1 and gifs[0].with_suffix(".png").is_file()
    im = Image.open(gifs[0])
    assert im.is_animated and im.n_frames >= 2 and im.size[0] > im.size[1] / 4
    assert cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / gifs[0].name).read_bytes() == gifs[0].read_bytes()  # same seed, same bytes


def test_generate_records_both_descents(runs, tmp_path, capsys):
    argv = ["generate", "--model", str(runs["class"]), "--prompt", "3", "--n", "1", "--steps", "5", "--animate"]
    assert cli.main([*argv, "--out", str(tmp_path / "g")]) == 0
    assert "(10 steps)" in capsys.readouterr().out  # without and with CFG, 5 steps each


def _frames(path) -> int:
    return Image.open(path).n_frames


def test_setup_animates_each_row_of_steps(runs, tmp_path, capsys):
    argv = ["setup", "--model", str(runs["class"]), "--prompts", "3", "7", "--num-steps", "2", "3", "--animate"]
    assert cli.main([*argv, "--out", str(tmp_path / "s")]) == 0, capsys.readouterr().err
    assert "(5 steps)" in capsys.readouterr().out  # the 2-step row, then the 3-step row
    assert (tmp_path / "s" / "setup.gif").is_file() and (tmp_path / "s" / "setup.png").is_file()


@pytest.mark.parametrize("out", ["grid.png", "folder"])
def test_sample_animate_writes_the_grids_animation(runs, tmp_path, capsys, out):
    target = tmp_path / out
    argv = ["sample", "--model", str(runs["class"]), "--class", "3", "7", "--n", "2", "--steps", "4", "--animate"]
    assert cli.main([*argv, "--out", str(target)]) == 0, capsys.readouterr().err
    gif = target.with_suffix(".gif") if out.endswith(".png") else target / "grid.gif"
    first = gif.read_bytes()
    w, h = Image.open(gif).size
    assert _frames(gif) >= 2 and 1.5 < w / h < 2.5  # as the grid: 2 rows (classes) of 2 cells, each x_t | x̂_0
    assert cli.main([*argv, "--out", str(target)]) == 0
    assert gif.read_bytes() == first  # same seed, same bytes


def test_sample_animate_refuses_more_than_one_batch_and_writes_nothing(runs, tmp_path, capsys):
    from fundiff.cli.sample import SAMPLE_BATCH

    argv = ["sample", "--model", str(runs["time"]), "--n", str(SAMPLE_BATCH + 1), "--steps", "2", "--animate"]
    assert cli.main([*argv, "--out", str(tmp_path / "many")]) != 0
    err = capsys.readouterr().err
    assert "--animate records one batch" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "many").exists()
