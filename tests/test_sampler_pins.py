"""Every sampler's whole loop, pinned and checked against the exact answer for Gaussian data.

The denoiser is the exact (MMSE) one for data x_0 ~ N(m, s^2) with a mean and a spread per pixel. Then
E[x_0 | x_t] is known in closed form, and so is the probability-flow ODE: along it
z = (x_t - alpha_t m) / sqrt(alpha_t^2 s^2 + sigma_t^2) stays constant. The pins are one seeded run of
``samplers.sample`` per sampler over 8 strided steps of the linear T=1000 schedule (computed once from this
code); the properties say the runs are right: the deterministic samplers converge to the ODE solution at
their order, the stochastic ones sample the data distribution.
"""

import math

import pytest
import torch

from fundiff import samplers
from fundiff import timesteps as ts
from fundiff.denoisers import Prediction
from fundiff.schedules import NoiseSchedule


class GaussianData:
    """The exact denoiser of x_0 ~ N(m, s^2) per pixel, on ``schedule`` (4x4 gray images, no conditioning)."""

    channels, image_size, value_range = 1, 4, (0.0, 1.0)

    def __init__(self, schedule, dtype=torch.float32):
        self.schedule = schedule
        self.m = torch.linspace(0.1, 0.9, 16, dtype=dtype).reshape(1, 1, 4, 4)
        self.s = torch.linspace(0.5, 0.2, 16, dtype=dtype).reshape(1, 1, 4, 4)
        self.calls = 0

    def encode(self, prompts):
        return torch.zeros(len(prompts), 0)

    def __call__(self, x_t, t, cond):
        self.calls += 1
        abar = self.schedule.abar_at(t).to(x_t.dtype).reshape(-1, 1, 1, 1)
        alpha, var = abar.sqrt(), 1 - abar
        x0 = self.m + alpha * self.s**2 / (abar * self.s**2 + var) * (x_t - alpha * self.m)
        return Prediction((x_t - alpha * x0) / var.sqrt())

    def ode_state(self, x_T, t_T, t):
        """The probability-flow ODE's x_t from x_T at level t_T (z constant along the path)."""

        def spread(level):
            abar = float(self.schedule.abar_at(level))
            return math.sqrt(abar), (abar * self.s**2 + 1 - abar).sqrt()

        (a_T, r_T), (a, r) = spread(t_T), spread(t)
        return a * self.m + r * (x_T - a_T * self.m) / r_T


SCHEDULE = NoiseSchedule.linear(1000)
STEPS = ts.strided(1000, steps=8)  # 999, 856, 714, 571, 428, 285, 143, 0
SAMPLER_CASES = {
    "ddpm": samplers.DDPM(),
    "ddim": samplers.DDIM(eta=0.0),
    "ddim-eta0.5": samplers.DDIM(eta=0.5),
    "dpm++": samplers.DPMSolverPP(),
    "euler": samplers.Euler(),
    "heun": samplers.Heun(),
}
# (sum of the 2x1x4x4 output, out[0, 0, 0, :], out[1, 0, 3, 3]), computed once from this code
PINS = {
    "ddpm": (17.422489, [0.383587, -0.097834, 0.139155, 0.211425], 1.069147),
    "ddim": (15.032738, [-0.268005, -0.203052, 0.133273, 0.140750], 0.830684),
    "ddim-eta0.5": (15.903002, [0.172879, -0.304612, 0.116906, -0.094867], 1.029649),
    "dpm++": (14.031744, [-0.660220, -0.586499, 0.053582, 0.010135], 0.753494),
    "euler": (15.032738, [-0.268005, -0.203053, 0.133273, 0.140750], 0.830684),
    "heun": (15.027343, [-0.445582, -0.383536, 0.094119, 0.073462], 0.700326),
}


def _pinned_run(name):
    den = GaussianData(SCHEDULE)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    out = samplers.sample(den, x_T, STEPS, cond=den.encode(["", ""]), generator=g, sampler=SAMPLER_CASES[name])
    return out, den.calls


@pytest.mark.parametrize("name", sorted(PINS))
def test_full_loop_is_pinned(name):
    out, calls = _pinned_run(name)
    total, row, corner = PINS[name]
    assert out.shape == (2, 1, 4, 4) and out.dtype == torch.float32
    assert out.sum().item() == pytest.approx(total, abs=2e-5)
    assert out[0, 0, 0].tolist() == pytest.approx(row, abs=2e-6)
    assert out[1, 0, 3, 3].item() == pytest.approx(corner, abs=2e-6)
    assert calls == (2 * len(STEPS) - 1 if name == "heun" else len(STEPS))  # Heun: 2 per step, 1 on the last


def test_euler_is_ddim_with_eta_zero_and_the_deterministic_samplers_ignore_the_generator():
    """Euler in flow time keeps x0_hat and eps_hat fixed over a step, as DDIM (eta 0) does, on any VP schedule."""
    ddim, _ = _pinned_run("ddim")
    torch.testing.assert_close(_pinned_run("euler")[0], ddim, rtol=0, atol=1e-5)
    den = GaussianData(SCHEDULE)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for name in ("ddim", "dpm++", "euler", "heun"):
        other = samplers.sample(den, x_T, STEPS, cond=den.encode(["", ""]), generator=torch.Generator().manual_seed(9),
                                sampler=SAMPLER_CASES[name])  # fmt: skip
        assert torch.equal(other, _pinned_run(name)[0]), name
    for name in ("ddpm", "ddim-eta0.5"):
        other = samplers.sample(den, x_T, STEPS, cond=den.encode(["", ""]), generator=torch.Generator().manual_seed(9),
                                sampler=SAMPLER_CASES[name])  # fmt: skip
        assert not torch.allclose(other, _pinned_run(name)[0], atol=1e-2), name


def _lambda_grid(schedule, n):
    """About n timesteps evenly spaced in log-SNR lambda = log(alpha / sigma), from T - 1 to 0 (distinct ints)."""
    abar = schedule.abar
    lam = 0.5 * torch.log(abar / (1 - abar))
    targets = torch.linspace(float(lam[-1]), float(lam[0]), n)
    return sorted({int((lam - v).abs().argmin()) for v in targets}, reverse=True)


@pytest.mark.parametrize("name, order", [("ddim", 1), ("euler", 1), ("heun", 2), ("dpm++", 2)])
def test_deterministic_samplers_converge_to_the_ode_solution_at_their_order(name, order):
    """x at the last grid level (t = 0) against the exact ODE state there, on grids of 12, 24 and 48 steps even
    in log-SNR (float64): doubling the steps halves the error (first order) or quarters it (second order)."""
    den = GaussianData(SCHEDULE, dtype=torch.float64)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for n in (12, 24, 48):
        grid = _lambda_grid(SCHEDULE, n)
        assert grid[0] == 999 and grid[-1] == 0
        seen = {}

        def keep(i, t, t_prev, x_prev, x0_hat, seen=seen):
            seen[t_prev] = x_prev

        samplers.sample(den, x_T, grid, cond=den.encode(["", ""]), sampler=SAMPLER_CASES[name], on_step=keep)
        errors.append((seen[0] - den.ode_state(x_T, 999, 0)).abs().max().item())
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    if order == 1:
        assert all(1.6 < r < 2.5 for r in ratios), (errors, ratios)
        assert errors[-1] < 0.1
    else:
        assert all(r > 3.0 for r in ratios), (errors, ratios)
        assert errors[-1] < 5e-3


@pytest.mark.parametrize("name", ["ddpm", "ddim-eta0.5"])
def test_stochastic_samplers_sample_the_data_distribution(name):
    """All 1000 steps from pure noise with the exact denoiser: the standardised samples (x - m) / s of 512 4x4
    images have mean about 0 and standard deviation about 1 (few strided steps would shrink the spread)."""
    den = GaussianData(SCHEDULE)
    x_T = torch.randn(512, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(4)
    out = samplers.sample(den, x_T, ts.full(1000), cond=den.encode([""] * 512), generator=g,
                          sampler=SAMPLER_CASES[name])  # fmt: skip
    z = (out - den.m) / den.s
    assert abs(z.mean().item()) < 0.03 and abs(z.std().item() - 1) < 0.03, (z.mean().item(), z.std().item())
    per_pixel = z.std(dim=0)  # every pixel's own spread, so m and s are per pixel as asked
    assert (per_pixel - 1).abs().max().item() < 0.12, per_pixel
