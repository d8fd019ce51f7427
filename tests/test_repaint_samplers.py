"""RePaint (Lugmayr et al. 2022, Alg. 1) with the flow-time samplers Euler and Heun taking its denoising steps.

``edits.inpaint(method="repaint", sampler=...)`` walks the levels of :func:`edits.repaint_walk` (pinned against
diffusers' RePaintScheduler in test_edits.py): down a level is one sampler step followed by putting the known
region back (noised to the new level); up a level re-noises by q(x_t'' | x_t'). Checked here against that
algorithm written out on its own, with each sampler's step in its textbook form.
"""

import math

import pytest
import torch

from fundiff import edits
from fundiff import timesteps as ts
from fundiff.schedules import NoiseSchedule
from helpers import FlatPrior, tiny_unet

STEPS = ts.strided(20, steps=6)  # 19, 15, 11, 8, 4, 0
# repaint_walk(6, jump 2, resample 3) by hand: jump points at levels 2 and 0, each gone back up twice by 2 levels
WALK = [6, 5, 4, 3, 2, 3, 4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0]


class Counting:
    """Wraps a Denoiser and records the timestep of every call."""

    def __init__(self, den):
        self.den, self.schedule, self.seen = den, den.schedule, []
        self.channels, self.image_size, self.value_range = den.channels, den.image_size, den.value_range

    def encode(self, prompts):
        return self.den.encode(prompts)

    def __call__(self, x_t, t, cond):
        self.seen.append(int(t[0]))
        return self.den(x_t, t, cond)


def _setup():
    den = Counting(tiny_unet())
    x0 = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(28, 28)
    mask[6:20, 4:18] = 1
    return den, x0, mask, den.encode(["", "7"])


def _reference_repaint(den, x0, mask, steps, walk, cond, rule, seed):
    """RePaint by the book, on abar = cumprod(1 - beta) with abar_{-1} = 1; returns (x_0, timesteps called).

    Euler is written as DDIM with eta 0 (x' = alpha' x0_hat + sigma' eps_hat, the same rule); Heun as Karras
    et al. 2022, Alg. 1 in flow time tau = sigma / (alpha + sigma) on x_tau = x_t / (alpha + sigma)."""
    g = torch.Generator().manual_seed(seed)
    abar = torch.cumprod(1 - den.schedule.betas, 0).tolist() + [1.0]  # abar[-1] = 1: the clean image
    known = mask.expand_as(x0) <= 0.5
    called = []

    def level(q):  # walk level -> timestep: level n is steps[0], level 0 the clean image
        return steps[len(steps) - q] if q > 0 else -1

    def predict(x, t):  # (eps_hat, x0_hat)
        called.append(t)
        eps = den(x, torch.full((x.shape[0],), t), cond).eps
        return eps, (x - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t])

    def frame(t):  # (tau, alpha + sigma)
        a, s = math.sqrt(abar[t]), math.sqrt(1 - abar[t])
        return s / (a + s), a + s

    def velocity(x_tau, t):  # dx_tau / dtau = eps_hat - x0_hat at x_t = (alpha + sigma) x_tau
        eps, x0_hat = predict(frame(t)[1] * x_tau, t)
        return eps - x0_hat

    def step(x, t, t_next):
        if rule == "euler":
            eps, x0_hat = predict(x, t)
            return math.sqrt(abar[t_next]) * x0_hat + math.sqrt(1 - abar[t_next]) * eps
        (tau, k), (tau_next, k_next) = frame(t), frame(t_next)
        x_tau = x / k
        d = velocity(x_tau, t)
        x_euler = x_tau + (tau_next - tau) * d
        if t_next < 0:  # tau' = 0: Euler on the last step
            return x_euler
        return k_next * (x_tau + (tau_next - tau) * (d + velocity(x_euler, t_next)) / 2)

    x = torch.randn(x0.shape, generator=g)
    for q, q_next in zip(walk, walk[1:]):
        t, t_next = level(q), level(q_next)
        if q_next < q:
            x = step(x, t, t_next)
            if t_next < 0:
                x = torch.where(known, x0, x)
            else:
                a = abar[t_next]
                x = torch.where(known, math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=g), x)
        else:
            ratio = abar[t_next] / abar[t]
            x = math.sqrt(ratio) * x + math.sqrt(1 - ratio) * torch.randn(x0.shape, generator=g)
    return x, called


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_repaint_with_euler_and_heun_is_repaint_by_the_book(sampler):
    den, x0, mask, cond = _setup()
    assert edits.repaint_walk(len(STEPS), 2, 3) == WALK
    out = edits.inpaint(den, x0, mask, STEPS, cond=cond, generator=torch.Generator().manual_seed(3), method="repaint",
                        jump_length=2, resample=3, sampler=sampler)  # fmt: skip
    keep = (mask <= 0.5).expand_as(x0)
    assert torch.equal(out[keep], x0[keep]) and torch.isfinite(out).all()
    assert not torch.allclose(out[~keep], x0[~keep], atol=0.1)  # something new inside the mask

    downs = [(q, q_next) for q, q_next in zip(WALK, WALK[1:]) if q_next < q]
    assert len(downs) == 14 and sum(q_next == 0 for _, q_next in downs) == 3
    assert len(den.seen) == (14 if sampler == "euler" else 2 * 14 - 3)  # Heun: one call on each step to t = -1

    want, called = _reference_repaint(den, x0, mask, STEPS, WALK, cond, sampler, seed=3)
    assert den.seen[: len(called)] == called and len(den.seen) == 2 * len(called)  # same calls, in order
    torch.testing.assert_close(out, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_repaint_with_one_resample_is_the_replace_method_for_euler_and_heun(sampler):
    den, x0, mask, cond = _setup()

    def run(method, seed=4):
        return edits.inpaint(den, x0, mask, STEPS, cond=cond, generator=torch.Generator().manual_seed(seed),
                             method=method, jump_length=1, resample=1, sampler=sampler)  # fmt: skip

    replace = run("replace")
    assert torch.equal(run("repaint"), replace)
    assert not torch.equal(run("repaint", seed=5), replace)  # the known region's noise comes from the generator
    assert len(den.seen) == 3 * (len(STEPS) if sampler == "euler" else 2 * len(STEPS) - 1)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_repaint_resampling_harmonises_the_fill_for_euler_and_heun(sampler):
    """As with DDPM (test_edits.py): on flat images, with the exact denoiser, resampling pulls the fill onto the
    known value (the deterministic samplers get their noise from the jumps back up)."""
    den = FlatPrior(NoiseSchedule.cosine(20))
    x0 = torch.full((32, 1, 8, 8), 0.8)
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1

    def fill_error(method, resample=1):
        out = edits.inpaint(den, x0, mask, ts.strided(20, steps=5), cond=den.encode([""] * 32),
                            generator=torch.Generator().manual_seed(4), method=method, jump_length=1,
                            resample=resample, sampler=sampler)  # fmt: skip
        assert torch.equal(out[..., 4:], x0[..., 4:])
        return (out[..., :4] - 0.8).abs().mean().item()

    replace, twice, five = fill_error("replace"), fill_error("repaint", 2), fill_error("repaint", 5)
    assert replace > 0.06 and twice < 0.045 and five < 0.015, (replace, twice, five)
