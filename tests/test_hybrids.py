"""Hybrid images beyond the write-up's two prompts (fundiff.illusions.hybrid_figure, `fundiff hybrid`): three
frequency bands (--mid), the low band from a given image (--low-image), and the combinations refused before
anything is written. The composers' band math is tested in test_composers.py."""

import argparse

import pytest
import torch

from fundiff import DEFAULT_SEED, cli, images, samplers, techniques
from fundiff import timesteps as ts
from fundiff.backends import runs
from fundiff.cli.techniques import register, technique_families
from fundiff.composers import Hybrid
from fundiff.guidance import CFG, DEFAULT_GUIDANCE
from fundiff.views import GaussianFilter
from helpers import rejected as _rejected
from helpers import tiny_unet

STEPS = ts.strided(20, steps=5)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_two_prompt_figure_samples_todays_hybrid_exactly():
    """The two-prompt form is the write-up's Hybrid composer under CFG, from the seed's noise, bit for bit (its
    formula is pinned bit for bit in test_composers.py)."""
    den = tiny_unet()
    fig = techniques.hybrid_figure(den, "0", "1", kernel_size=5, sigma=1.0, n=2, timesteps=STEPS, sampler="ddpm")
    model = Hybrid.from_prompts(CFG(den, DEFAULT_GUIDANCE), "0", "1", GaussianFilter(5, 1.0))
    g = torch.Generator().manual_seed(DEFAULT_SEED)
    today = samplers.sample_from_noise(model, model.encode(["", ""]), STEPS, generator=g, sampler="ddpm")
    assert torch.equal(fig.images["x_0"], today)
    assert set(fig.images) == {"x_0", "lowpass", "highpass"}


def test_three_equal_prompts_sample_as_that_prompt_and_three_bands_are_written(tmp_path):
    den = tiny_unet()
    kw = dict(n=2, timesteps=STEPS, sampler="ddim")
    two = techniques.hybrid_figure(den, "3", "3", **kw)
    three = techniques.hybrid_figure(den, "3", "3", mid="3", out=tmp_path, **kw)
    torch.testing.assert_close(three.images["x_0"], two.images["x_0"], rtol=0, atol=1e-5)  # the bands sum to I
    parts = three.images["lowpass"] + three.images["bandpass"] + three.images["highpass"]
    torch.testing.assert_close(parts, three.images["x_0"], rtol=0, atol=1e-5)
    names = {p.name for p in (tmp_path / "hybrid").iterdir()}
    assert {"low-pass-3_sample-1.png", "band-pass-3_sample-2.png", "high-pass-3_sample-1.png"} <= names


def test_low_image_holds_the_given_images_low_band():
    """On a tiny (untrained) model the samples' low band lies close to the given drawing's, ten times closer than
    a prompt's hybrid's; a file name and the same image as a tensor give the same samples."""
    den = tiny_unet()
    x_ref = images.load_image("two")  # 28x28 in [0, 1]
    low = GaussianFilter(9, 1.5)  # the model's (techniques.DIGIT_DEFAULTS) filter
    kw = dict(high="1", n=3, timesteps=STEPS, sampler="ddim")
    held = techniques.hybrid_figure(den, low_image=x_ref, **kw)
    prompted = techniques.hybrid_figure(den, "0", **kw)

    def gap(fig):
        return float((low.lowpass(fig.images["x_0"]) - low.lowpass(x_ref)).abs().max())

    assert gap(held) < 0.15 and gap(held) < gap(prompted) / 5, (gap(held), gap(prompted))
    assert not torch.allclose(held.images["x_0"], x_ref.expand(3, -1, -1, -1), atol=0.1)  # not just the image
    assert torch.equal(techniques.hybrid_figure(den, low_image="two", **kw).images["x_0"], held.images["x_0"])
    with_mid = techniques.hybrid_figure(den, low_image="two", mid="7", **kw)
    assert gap(with_mid) < 0.15 and "bandpass" in with_mid.images


BAD = [  # refused with a one-line message that says what to do; the last two after the model's defaults load
    (["--low", "0", "--low-image", "two"], "give one of them, not both"),
    (["--mid-sigma", "0.5"], "--mid-sigma sets the mid band's filter of a three-prompt hybrid; give --mid PROMPT"),
    (["--mid-kernel-size", "3", "--mid-sigma", "0.5"], "--mid-kernel-size and --mid-sigma set the mid band's"),
    (["--mid", "3", "--sigma", "1", "--mid-sigma", "1"], "--mid-sigma 1 must be below --sigma 1"),
    (["--low-image", "missing.png"], "image file 'missing.png' not found"),
    (["--low-image", "notes.txt"], "cannot read 'notes.txt' as an image"),
    (["--mid", "3", "--sigma", "0.5"], "--mid-sigma 0.75 must be below --sigma 0.5"),
    (["--mid", "3", "--mid-sigma", "2"], "--mid-sigma 2 must be below --sigma 2"),  # mnist-class: sigma 2
]


@pytest.mark.parametrize("flags,match", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_combinations_are_one_line_errors_and_write_nothing(flags, match, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    _rejected(capsys, ["hybrid", *flags, "--n", "1", "--steps", "2", "--threads", "1"], match)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_cli_makes_the_apis_pictures_for_the_new_forms(tmp_path):
    den = runs.load_denoiser("mnist-class")  # fp32, as the CLI with --precision fp32
    kw = dict(mid="0", high="1", n=1, timesteps=ts.resolve(den.schedule.T, steps=3))
    techniques.hybrid_figure(den, low_image="two", **kw, out=tmp_path / "api")
    argv = ["hybrid", "--model", "mnist-class", "--low-image", "two", "--mid", "0", "--high", "1", "--n", "1"]
    assert (
        cli.main([*argv, "--steps", "3", "--precision", "fp32", "--threads", "1", "--out", str(tmp_path / "cli")]) == 0
    )

    def pngs(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}

    api = pngs(tmp_path / "api")
    assert len(api) == 6 and api == pngs(tmp_path / "cli")  # figure, hybrid, image low-pass, three bands


def test_help_names_the_new_flags_and_their_per_model_defaults():
    parser = argparse.ArgumentParser(prog="fundiff")
    register(parser.add_subparsers(dest="command"))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in sub.choices["hybrid"]._actions}
    d = techniques.DIGIT_DEFAULTS
    assert f"mnist models: {d.hybrid_mid_sigma:g}" in actions["mid_sigma"].help
    assert all(f.hybrid_mid_sigma < f.hybrid_sigma for f in technique_families().values())  # IF's too
    assert "(default: none: two bands)" in actions["mid"].help
    assert "--low-image" in actions["low_image"].option_strings and actions["low_image"].metavar == "FILE"
