"""Evaluation procedures: the one-step denoiser's sigma sweep, drawing samples, the guidance sweep and its plot."""

import math

import pytest
import torch
from torch import nn

from fundiff import data, evaluation, metrics
from fundiff.timesteps import strided
from helpers import PixelClassifier, tiny_unet


class Constant(nn.Module):
    """A "denoiser" that ignores its input and returns mid-gray."""

    def forward(self, z):
        return torch.full_like(z, 0.5)


def test_denoise_sweep_scores_against_the_clean_images_with_seeded_noise():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sigmas = (0.0, 0.5, 1.0)
    rows, images = evaluation.denoise_sweep(nn.Identity(), x, sigmas, generator=torch.Generator().manual_seed(1))
    assert [r.sigma for r in rows] == list(sigmas) and list(images) == list(sigmas)
    g = torch.Generator().manual_seed(1)  # one noise draw per sigma, in order, from the generator
    for sigma in sigmas:
        z, out = images[sigma]
        torch.testing.assert_close(z, x + sigma * torch.randn(x.shape, generator=g))
        assert torch.equal(out, z.clamp(0, 1))  # the identity "denoiser", clamped to [0,1]
    assert rows[0].mse == 0 and rows[0].psnr == math.inf
    for r in rows:  # the identity's error is the noisy input's
        assert r.mse == pytest.approx(r.mse_noisy) and r.psnr == pytest.approx(metrics.psnr(r.mse))
    assert rows[1].mse < rows[2].mse  # more noise, larger error
    const, _ = evaluation.denoise_sweep(Constant(), x, sigmas, generator=torch.Generator().manual_seed(1), batch_size=4)
    want = float(((0.5 - x) ** 2).mean())
    assert all(r.mse == pytest.approx(want) for r in const)  # the output, not the noisy input, is scored


def test_guidance_sweep_shares_noise_across_scales_and_leaves_the_generator_alone(tmp_path):
    den = tiny_unet(class_names=data.CLASS_NAMES["mnist"])
    g = torch.Generator().manual_seed(7)
    state = g.get_state()
    clf = PixelClassifier().eval()
    meter = metrics.FID(clf, torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    res = evaluation.guidance_sweep(
        den,
        clf,
        [1.0, 1.0, 3.0],
        strided(20, steps=3),
        class_names=den.class_names,
        n_per_class=2,
        generator=g,
        fid=meter,
        batch_size=7,
    )
    assert torch.equal(g.get_state(), state)
    assert [r.scale for r in res] == [1.0, 1.0, 3.0]
    assert res[0].samples.shape == (20, 1, 28, 28) and 0 <= res[0].samples.min() and res[0].samples.max() <= 1
    assert torch.equal(res[0].samples, res[1].samples) and not torch.equal(res[0].samples, res[2].samples)
    assert res[0].accuracy.counts == (2,) * 10
    assert res[0].fid == pytest.approx(res[1].fid) and res[0].fid == pytest.approx(meter(res[0].samples))
    path = evaluation.plot_guidance_sweep(res, tmp_path / "sweep.png", class_names=den.class_names)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_samples_is_seeded():
    den = tiny_unet(class_names=data.CLASS_NAMES["mnist"])
    ts = strided(20, steps=2)
    a = evaluation.draw_samples(den, ["3", "4", ""], ts, generator=torch.Generator().manual_seed(1), batch_size=2)
    b = evaluation.draw_samples(den, ["3", "4", ""], ts, generator=torch.Generator().manual_seed(1), batch_size=2)
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b)
