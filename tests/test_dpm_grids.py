"""DPM-Solver++(2M) on the flow-matching grid and on the cosine schedule, against diffusers.

tests/test_samplers.py checks fundiff's ``dpm++`` against diffusers' DPMSolverMultistepScheduler on the linear
schedule. The shipped models run on the flow grid ``flow.schedule(T)`` (a VP schedule whose abar comes from flow
times) and DeepFloyd IF on the cosine schedule; here diffusers' scheduler is built from the same betas and both
take the same model outputs step by step. Skipped without diffusers.

diffusers keeps its schedule in float32 (betas, their cumprod, and the sigmas of ``set_timesteps``); near
T - 1 abar is 1e-6 (flow grid) to 1e-9 (cosine), where that rounding moves a few-step sample by up to ~5e-3.
So the algorithm is compared in float64 with diffusers' sigmas taken from the same float64 alphas_cumprod
(agreement ~1e-7), and the scheduler as diffusers builds it within that float32 rounding.
"""

import math

import numpy as np
import pytest
import torch

from fundiff import flow, samplers
from fundiff import timesteps as ts
from fundiff.denoisers import Prediction
from fundiff.schedules import NoiseSchedule


class GaussianData:
    """The exact denoiser of x_0 ~ N(m, s^2) per pixel, with a mean shifted by the conditioning (B, 1)."""

    channels, image_size, value_range = 1, 4, (0.0, 1.0)

    def __init__(self, schedule, dtype=torch.float32):
        self.schedule, self.dtype = schedule, dtype
        self.m = torch.linspace(0.1, 0.9, 16, dtype=dtype).reshape(1, 1, 4, 4)
        self.s = torch.linspace(0.5, 0.2, 16, dtype=dtype).reshape(1, 1, 4, 4)

    def encode(self, prompts):
        return torch.tensor([[0.1 * len(p)] for p in prompts], dtype=self.dtype)

    def __call__(self, x_t, t, cond):
        abar = self.schedule.abar_at(t).to(x_t.dtype).reshape(-1, 1, 1, 1)
        alpha, var = abar.sqrt(), 1 - abar
        m = self.m + cond.reshape(-1, 1, 1, 1)
        x0 = m + alpha * self.s**2 / (abar * self.s**2 + var) * (x_t - alpha * m)
        return Prediction((x_t - alpha * x0) / var.sqrt())


def _diffusers_dpmpp(schedule, timesteps, **how):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.T,
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        **(how or {"trained_betas": schedule.betas.numpy()}),
    )
    sched.set_timesteps(timesteps=timesteps)
    return sched


def _trained_on(sched, abar, timesteps):
    """``sched`` with the float64 alphas_cumprod ``abar`` and its set_timesteps sigmas
    sqrt((1 - abar_t) / abar_t) at ``timesteps`` (then 0, final_sigmas_type="zero") kept in float64."""
    sched.alphas_cumprod = abar.clone()
    a = abar[timesteps].numpy()
    sched.sigmas = torch.from_numpy(np.concatenate([np.sqrt((1 - a) / a), [0.0]]))
    return sched


def _theirs(sched, den, x_T, cond):
    x = x_T.clone()
    for t in sched.timesteps:
        eps = den(x, torch.full((x.shape[0],), int(t)), cond).eps
        x = sched.step(eps, t, x).prev_sample
    return x


GRIDS = {
    "flow-1000": lambda: flow.schedule(1000),
    "flow-100": lambda: flow.schedule(100),
    "cosine-1000": lambda: NoiseSchedule.cosine(1000),
    "cosine-100": lambda: NoiseSchedule.cosine(100),
}


@pytest.mark.parametrize("steps", [2, 5, 12, 20])
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_dpm_solver_pp_matches_diffusers_on_the_flow_and_cosine_grids(grid, steps):
    schedule = GRIDS[grid]()
    timesteps = ts.strided(schedule.T, steps=steps)
    sched = _diffusers_dpmpp(schedule, timesteps)
    assert [int(t) for t in sched.timesteps] == timesteps
    torch.testing.assert_close(sched.alphas_cumprod.double(), schedule.abar, rtol=1e-5, atol=1e-9)  # same betas

    den = GaussianData(schedule, torch.float64)
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cond = den.encode(["a", "bb", ""])
    mine = samplers.sample(den, x_T, timesteps, cond=cond, sampler="dpm++")
    theirs = _theirs(_trained_on(sched, schedule.abar, timesteps), den, x_T, cond)
    torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=2e-6)
    if steps > 2:  # from three steps on, the second-order updates make it differ from DDIM (eta 0)
        ddim = samplers.sample(den, x_T, timesteps, cond=cond, sampler="ddim")
        assert (mine - ddim).abs().max().item() > 1e-3

    den32 = GaussianData(schedule)  # fundiff in float32 against diffusers' own float32 schedule
    mine32 = samplers.sample(den32, x_T.float(), timesteps, cond=cond.float(), sampler="dpm++")
    theirs32 = _theirs(_diffusers_dpmpp(schedule, timesteps), den32, x_T.float(), cond.float())
    torch.testing.assert_close(mine32, theirs32, rtol=0, atol=1e-2)


@pytest.mark.parametrize("T", [100, 1000])
def test_cosine_schedule_is_diffusers_squaredcos_cap_v2(T):
    """fundiff's cosine betas are diffusers' squaredcos_cap_v2 (capped at 0.999), so the scheduler built by name
    samples the same as the one built from fundiff's betas."""
    schedule = NoiseSchedule.cosine(T)
    timesteps = ts.strided(T, steps=10)
    by_name = _diffusers_dpmpp(schedule, timesteps, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(by_name.betas.double(), schedule.betas, rtol=1e-5, atol=1e-7)
    assert math.isclose(float(schedule.betas[-1]), 0.999)  # the cap
    den = GaussianData(schedule)
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    cond = den.encode(["", "a", "bb"])
    mine = samplers.sample(den, x_T, timesteps, cond=cond, sampler="dpm++")
    torch.testing.assert_close(mine, _theirs(by_name, den, x_T, cond), rtol=0, atol=1e-2)  # float32 rounding
    den64 = GaussianData(schedule, torch.float64)
    x64, c64 = x_T.double(), cond.double()
    fresh = _diffusers_dpmpp(schedule, timesteps, beta_schedule="squaredcos_cap_v2")  # a scheduler holds its state
    theirs = _theirs(_trained_on(fresh, torch.cumprod(1 - fresh.betas.double(), 0), timesteps), den64, x64, c64)
    torch.testing.assert_close(samplers.sample(den64, x64, timesteps, cond=c64, sampler="dpm++"), theirs,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
