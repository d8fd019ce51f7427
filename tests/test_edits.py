import math

import pytest
import torch

from fundiff import edits, samplers
from fundiff import timesteps as ts
from fundiff.denoisers import Prediction
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.traits import ModelTraits
from fundiff.views import GaussianFilter
from helpers import FlatPrior, tiny_unet


class GaussianPrior:
    """The exact (MMSE) denoiser for data x_0 ~ N(mu, s^2 I): E[x_0 | x_t] is linear in x_t."""

    traits = ModelTraits()  # no preferences: the defaults (ddpm, eps)

    channels, image_size, value_range = 1, 8, (0.0, 1.0)

    def __init__(self, schedule, mu=0.5, s=0.2):
        self.schedule, self.mu, self.s = schedule, mu, s

    def encode(self, prompts):
        return torch.zeros(len(prompts), 0)

    def __call__(self, x_t, t, cond):
        c = self.schedule.at(t, like=x_t)
        gain = c.alpha * self.s**2 / (c.abar * self.s**2 + c.sigma**2)
        x0_mean = self.mu + gain * (x_t - c.alpha * self.mu)
        return Prediction((x_t - c.alpha * x0_mean) / c.sigma)


class Oracle:
    """Predicts the exact noise of x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps for a known x_0."""

    traits = ModelTraits()  # no preferences: the defaults (ddpm, eps)

    channels, image_size, value_range = 1, 8, (0.0, 1.0)

    def __init__(self, schedule, x_0):
        self.schedule, self.x_0 = schedule, x_0

    def encode(self, prompts):
        return torch.zeros(len(prompts), 0)

    def __call__(self, x_t, t, cond):
        c = self.schedule.at(t, like=x_t)
        return Prediction((x_t - c.alpha * self.x_0) / c.sigma)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_forward_noise_is_q_sample_with_fresh_noise_per_t():
    s = NoiseSchedule.linear(50)
    x0 = torch.rand(2, 1, 4, 4, generator=_g(1))
    got = edits.forward_noise(s, x0, [10, 40], generator=_g(3))
    g = _g(3)
    want = torch.stack([s.q_sample(x0, t, torch.randn(x0.shape, generator=g)) for t in (10, 40)])
    assert got.shape == (2, 2, 1, 4, 4) and torch.equal(got, want)
    with pytest.raises(FundiffError, match="outside 0..49"):
        edits.forward_noise(s, x0, [50], generator=_g())


def test_forward_noise_variance_is_one_minus_abar():
    s = NoiseSchedule.linear(300)
    x_t = edits.forward_noise(s, torch.zeros(1, 1, 100, 100), [150], generator=_g())[0]
    assert abs(x_t.var().item() - (1 - s.abar[150].item())) < 0.02


def test_one_step_and_iterative_denoising_recover_x0_with_an_oracle():
    s = NoiseSchedule.linear(30)
    x0 = torch.rand(2, 1, 8, 8, generator=_g(1))
    den = Oracle(s, x0)
    x_t = s.q_sample(x0, 25, torch.randn(x0.shape, generator=_g(2)))
    torch.testing.assert_close(edits.one_step_denoise(den, x_t, 25, cond=den.encode(["", ""])), x0)
    steps = ts.strided(30, stride=3)  # 29, 26, ..., 2, 0
    x_end, seen = edits.iterative_denoise(den, x_t, 1, steps, cond=den.encode(["", ""]), generator=_g(), every=3)
    torch.testing.assert_close(x_end, x0, rtol=0, atol=1e-5)
    assert [t for t, _ in seen] == [26, 17, 8, 0] and seen[0][1] is x_t  # tail 26, 23, ..., 2, 0: every 3rd


def test_gaussian_blur_denoise_is_the_lowpass():
    x = torch.randn(1, 1, 10, 10, generator=_g())
    assert torch.equal(edits.gaussian_blur_denoise(x, 5, 1.5), GaussianFilter(5, 1.5).lowpass(x))


def test_sdedit_with_later_start_stays_closer_to_the_input():
    """Less noise (larger i_start) -> closer to x_0, averaged over 32 noise draws.

    The denoiser is the exact one for Gaussian data."""
    s = NoiseSchedule.cosine(40)
    den = GaussianPrior(s)
    steps = ts.full(40)
    x0 = (torch.arange(64).reshape(1, 1, 8, 8) % 3 == 0).float().expand(32, 1, 8, 8)  # far from the prior mean
    dist = []
    for i_start in (2, 10, 20, 30, 38):
        out = edits.sdedit(den, x0, i_start, steps, cond=den.encode([""] * 32), generator=_g(5))
        dist.append((out - x0).pow(2).mean().item())
    assert all(a > b for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] < 0.2 * dist[0]


def test_sdedit_is_q_sample_at_the_start_then_the_sampler_and_range_checked():
    """SDEdit = the first noise draw of the generator puts x_0 at t = steps[i_start] by q(x_t | x_0), the same
    generator then drives DDPM over steps[i_start:]; another seed gives another edit."""
    den = tiny_unet()
    x0 = torch.rand(2, 1, 28, 28, generator=_g())
    steps = ts.strided(20, steps=6)
    cond = den.encode(["3", ""])

    def run(seed):
        return edits.sdedit(den, x0, 2, steps, cond=cond, generator=_g(seed))

    g = _g(1)
    x_t = den.schedule.q_sample(x0, steps[2], torch.randn(x0.shape, generator=g))
    assert torch.equal(run(1), samplers.sample(den, x_t, steps[2:], cond=cond, generator=g, sampler="ddpm"))
    assert not torch.equal(run(1), run(2))
    with pytest.raises(FundiffError, match="i_start"):
        edits.sdedit(den, x0, 6, steps, cond=den.encode(["", ""]), generator=_g())


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
@pytest.mark.parametrize("method, kw", [("replace", {}), ("repaint", dict(jump_length=2, resample=3))])
def test_inpainting_keeps_every_pixel_outside_the_mask_exactly(method, kw, sampler):
    den = tiny_unet()
    x0 = torch.rand(2, 1, 28, 28, generator=_g(1))
    mask = torch.rand(1, 1, 28, 28, generator=_g(2))  # soft values: binarised at 0.5
    before = (x0.clone(), mask.clone())
    out = edits.inpaint(
        den,
        x0,
        mask,
        ts.strided(20, steps=6),
        cond=den.encode(["", "7"]),
        generator=_g(3),
        method=method,
        sampler=sampler,
        **kw,
    )
    keep = (mask <= 0.5).expand_as(x0)
    assert torch.equal(out[keep], x0[keep])
    assert not torch.allclose(out[~keep], x0[~keep])  # something new was generated inside
    assert torch.equal(x0, before[0]) and torch.equal(mask, before[1])


def test_repaint_with_one_resample_is_the_replace_method():
    den = tiny_unet()
    x0 = torch.rand(1, 1, 28, 28, generator=_g(1))
    mask = torch.zeros(28, 28)
    mask[:14] = 1

    def run(method):
        steps = ts.strided(20, steps=5)
        return edits.inpaint(den, x0, mask, steps, cond=den.encode([""]), generator=_g(4), method=method, resample=1)

    assert torch.equal(run("replace"), run("repaint"))


def test_repaint_resampling_harmonises_the_fill_with_the_known_pixels():
    """On flat images the known half fixes the missing half. With the exact denoiser, the replace method's fill
    lags behind the known value (it only sees it through noised copies); RePaint's resampling (jump 1) pulls
    the fill onto it, the more so the more it resamples (Lugmayr et al. 2022, Sec. 4.2). 32 images, seeded."""
    den = FlatPrior(NoiseSchedule.cosine(20))
    x0 = torch.full((32, 1, 8, 8), 0.8)  # 1.5 prior standard deviations above the prior mean 0.5
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    steps = ts.strided(20, steps=5)

    def fill_error(method, resample=1, seed=4):
        out = edits.inpaint(den, x0, mask, steps, cond=den.encode([""] * 32), generator=_g(seed), method=method,
                            jump_length=1, resample=resample)  # fmt: skip
        assert torch.equal(out[..., 4:], x0[..., 4:])
        return (out[..., :4] - 0.8).abs().mean().item()

    replace, twice, five = fill_error("replace"), fill_error("repaint", 2), fill_error("repaint", 5)
    assert replace > 0.05 and twice < 0.035 and five < 0.015, (replace, twice, five)
    assert fill_error("repaint", 2, seed=5) != twice  # the walk's noise comes from the generator


def test_mismatched_mask_and_bad_options_are_one_line_errors():
    den = tiny_unet()
    x0 = torch.rand(1, 1, 28, 28)
    for bad in (torch.ones(27, 28), torch.ones(2, 1, 28, 28)):
        with pytest.raises(FundiffError) as e:
            edits.inpaint(den, x0, bad, [10, 0], cond=den.encode([""]), generator=_g())
        assert "\n" not in str(e.value) and "mask of shape" in str(e.value)
    with pytest.raises(FundiffError, match="replace, repaint"):
        edits.inpaint(den, x0, torch.ones(28, 28), [10, 0], cond=den.encode([""]), generator=_g(), method="blend")
    with pytest.raises(FundiffError, match="jump length"):
        edits.inpaint(
            den,
            x0,
            torch.ones(28, 28),
            [10, 5, 0],
            cond=den.encode([""]),
            generator=_g(),
            method="repaint",
            jump_length=3,
            resample=2,
        )


def test_repaint_walk_shape():
    assert edits.repaint_walk(4, 2, 1) == [4, 3, 2, 1, 0]
    walk = edits.repaint_walk(10, 3, 4)
    assert walk[0] == 10 and walk[-1] == 0 and min(walk) == 0
    assert all(abs(a - b) == 1 for a, b in zip(walk, walk[1:]))
    downs = sum(b < a for a, b in zip(walk, walk[1:]))
    assert downs == 10 + 3 * 3 * 3  # jump points 0, 3, 6, each re-descended 3 more times over 3 levels


def test_repaint_walk_matches_diffusers_repaint_scheduler():
    diffusers = pytest.importorskip("diffusers")
    for n, j, r in [(25, 10, 10), (30, 5, 5), (12, 1, 3)]:
        sched = diffusers.RePaintScheduler(num_train_timesteps=300)
        sched.set_timesteps(n, jump_length=j, jump_n_sample=r)
        assert edits.repaint_walk(n, j, r)[1:] == (sched.timesteps // (300 // n)).tolist()


def test_renoise_has_the_forward_marginal():
    """x_t ~ q(x_t | x_0) renoised to t_up must be distributed as q(x_t_up | x_0): checked on x_0 = 0.5."""
    s = NoiseSchedule.linear(100)
    x0 = torch.full((1, 1, 200, 200), 0.5)
    x_t = s.q_sample(x0, 30, torch.randn(x0.shape, generator=_g(1)))
    x_up = edits.renoise(s, x_t, 30, 80, generator=_g(2))
    assert abs(x_up.mean().item() - 0.5 * s.abar[80].sqrt().item()) < 0.01
    assert abs(x_up.var().item() - (1 - s.abar[80].item())) < 0.02
    x_clean = edits.renoise(s, x0, -1, 80, generator=_g(2))  # from the clean image: plain q_sample
    assert abs(x_clean.var().item() - (1 - s.abar[80].item())) < 0.02
    with pytest.raises(FundiffError):
        edits.renoise(s, x_t, 80, 30, generator=_g())


def test_inpainting_with_an_empty_mask_is_an_error():
    den = tiny_unet()
    x0 = torch.rand(1, 1, 28, 28, generator=_g(1))
    with pytest.raises(FundiffError, match="selects no pixel"):
        edits.inpaint(den, x0, torch.full((28, 28), 0.4), [10, 0], cond=den.encode([""]), generator=_g())


def _ddim_by_hand(den, x, steps, cond):
    """DDIM with eta = 0 (Song et al. 2021, Eq. 12) written out on abar = cumprod(1 - beta), abar_{-1} = 1:
    x0_hat = (x - sqrt(1 - a) eps) / sqrt(a), x' = sqrt(a') x0_hat + sqrt(1 - a') eps."""
    abar = torch.cumprod(1 - den.schedule.betas, 0).tolist() + [1.0]  # abar[-1] = 1: the clean image
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        eps = den(x, torch.full((x.shape[0],), t), cond).eps
        a, a_prev = abar[t], abar[t_prev]
        x0_hat = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps
    return x


def test_sdedit_and_iterative_denoising_take_any_sampler():
    """With DDIM (eta 0) both edits are the DDIM recursion written out by hand (iterative denoising then needs
    no generator noise at all); with DDPM they depend on the generator's noise; dpm++ is another rule."""
    den = tiny_unet()
    x0 = torch.rand(2, 1, 28, 28, generator=_g(1))
    steps = ts.strided(20, steps=6)
    cond = den.encode(["3", ""])
    x_t = torch.randn(2, 1, 28, 28, generator=_g(9))

    def run(sampler, seed):
        it, _ = edits.iterative_denoise(den, x_t, 1, steps, cond=cond, generator=_g(seed), sampler=sampler)
        return edits.sdedit(den, x0, 2, steps, cond=cond, generator=_g(seed), sampler=sampler), it

    sde, it = run("ddim", 1)
    noised = den.schedule.q_sample(x0, steps[2], torch.randn(x0.shape, generator=_g(1)))
    torch.testing.assert_close(sde, _ddim_by_hand(den, noised, steps[2:], cond), rtol=0, atol=1e-5)
    torch.testing.assert_close(it, _ddim_by_hand(den, x_t, steps[1:], cond), rtol=0, atol=1e-5)
    assert torch.equal(it, run("ddim", 2)[1])
    assert not torch.equal(run("ddpm", 1)[1], run("ddpm", 2)[1])
    assert not torch.equal(run("ddim", 1)[1], run("dpm++", 1)[1])
