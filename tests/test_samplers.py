import pytest
import torch

from fundiff import samplers
from fundiff import timesteps as ts
from fundiff.denoisers import Prediction
from fundiff.errors import FundiffError
from fundiff.guidance import CFG
from fundiff.prompts import class_index
from fundiff.schedules import NoiseSchedule
from fundiff.traits import ModelTraits


class FakeDenoiser:
    """Analytic denoiser: eps = x_t * k(cond) + t/T; records the timesteps it sees."""

    traits = ModelTraits()  # no preferences: the defaults (ddpm, eps)

    channels, image_size, value_range = 1, 4, (0.0, 1.0)
    conditional, traits = True, ModelTraits()

    def __init__(self, T=30):
        self.schedule = NoiseSchedule.linear(T)
        self.seen = []

    def encode(self, prompts):
        return torch.tensor([[0.0] if p == "" else [float(len(p))] for p in prompts])

    def __call__(self, x_t, t, cond):
        self.seen.append(t.tolist())
        return Prediction(0.1 * x_t * (1 + cond.reshape(-1, 1, 1, 1)) + t.reshape(-1, 1, 1, 1) / self.schedule.T)


def test_sampling_visits_first_and_last_step():
    den = FakeDenoiser(30)
    samplers.sample_from_noise(den, den.encode(["a", "bb"]), ts.full(30), generator=torch.Generator().manual_seed(0))
    firsts = [s[0] for s in den.seen]
    assert firsts[0] == 29 and firsts[-1] == 0 and len(firsts) == 30


def test_same_seed_same_samples_and_different_seed_differs():
    """sample_from_noise with the default sampler is the DDPM ancestral recursion (Ho et al. 2020, Alg. 2, strided
    pairs) written out here, x_T and each step's noise drawn in turn from the generator; another seed differs."""
    den = FakeDenoiser(30)
    steps = ts.strided(30, steps=7)
    cond = den.encode(["a"] * 3)

    def run(seed):
        return samplers.sample_from_noise(den, cond, steps, generator=torch.Generator().manual_seed(seed))

    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 4, 4, generator=g)
    abar = torch.cumprod(1 - den.schedule.betas, 0).tolist() + [1.0]  # abar[-1] = 1: the clean image
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        eps = den(x, torch.full((3,), t), cond).eps
        a, a_prev = abar[t], abar[t_prev]
        beta = 1 - a / a_prev
        x0_hat = (x - (1 - a) ** 0.5 * eps) / a**0.5
        x = a_prev**0.5 * beta / (1 - a) * x0_hat + (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a) * x
        if t_prev >= 0:
            x = x + (beta * (1 - a_prev) / (1 - a)) ** 0.5 * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(run(1), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(run(1), run(1), rtol=0, atol=0)
    assert not torch.allclose(run(1), run(2))


def test_cfg_formula_and_batched_passes():
    den = FakeDenoiser(30)
    x = torch.randn(2, 1, 4, 4)
    t = torch.tensor([5, 5])
    cond = den.encode(["abc", "abc"])
    eps_c = den(x, t, cond).eps
    eps_u = den(x, t, den.encode(["", ""])).eps
    den.seen.clear()
    for s in (0.0, 1.0, 5.0):
        got = CFG(den, s)(x, t, cond).eps
        torch.testing.assert_close(got, eps_u + s * (eps_c - eps_u))
    assert [len(v) for v in den.seen] == [2, 2, 4]  # scale 0/1 take one pass; else cond+uncond in one batch


def test_prompts():
    digits = [str(i) for i in range(10)]
    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert class_index("3", digits) == 3
    assert class_index("three", digits) == 3
    assert class_index("a photo of a 3", digits) == 3
    assert class_index("  ", digits) is None
    assert class_index("sneaker", fashion) == 7
    assert class_index("an ankle boot", fashion) == 9
    assert class_index("a photo of a t-shirt", fashion) == 0
    with pytest.raises(FundiffError, match="'Sneaker'") as e:
        class_index("a dragon", fashion)
    assert "\n" not in str(e.value)


# -- named samplers ---------------------------------------------------------------------------------
def _diffusers_dpmpp(T, timesteps, beta_schedule="linear"):
    diffusers = pytest.importorskip("diffusers")
    kw = dict(beta_start=1e-4, beta_end=0.02) if beta_schedule == "linear" else {}
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
        **kw,
    )
    sched.set_timesteps(timesteps=timesteps)
    return sched


@pytest.mark.parametrize("steps", [2, 5, 12, 20])
def test_dpm_solver_pp_matches_diffusers(steps):
    """DPM-Solver++(2M) on the same model outputs as diffusers' DPMSolverMultistepScheduler."""
    den = FakeDenoiser(300)
    timesteps = ts.strided(300, steps=steps)
    sched = _diffusers_dpmpp(300, timesteps)
    assert [int(t) for t in sched.timesteps] == timesteps
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    cond = den.encode(["a", "bb", ""])
    x = x_T.clone()
    for t in sched.timesteps:
        eps = den(x, torch.full((3,), int(t)), cond).eps
        x = sched.step(eps, t, x).prev_sample
    mine = samplers.sample(den, x_T, timesteps, cond=cond, sampler="dpm++")
    torch.testing.assert_close(mine, x, rtol=1e-4, atol=1e-4)


def test_dpm_solver_pp_is_deterministic_and_first_step_is_ddim():
    den = FakeDenoiser(30)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = den.encode(["a", "b"])
    a = samplers.sample(den, x_T, [29, 15], cond=cond, generator=torch.Generator().manual_seed(1), sampler="dpm++")
    b = samplers.sample(den, x_T, [29, 15], cond=cond, generator=torch.Generator().manual_seed(2), sampler="dpm++")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # with two steps both are first order, i.e. DDIM with eta = 0
    ddim = samplers.sample(den, x_T, [29, 15], cond=cond, sampler=samplers.DDIM(eta=0.0))
    torch.testing.assert_close(a, ddim, rtol=1e-5, atol=1e-5)


def test_sampler_by_name_and_bad_options():
    assert isinstance(samplers.get_sampler("ddpm"), samplers.DDPM)
    assert samplers.get_sampler("ddim", eta=0.3) == samplers.DDIM(eta=0.3)
    assert set(samplers.SAMPLERS) >= {"ddpm", "ddim", "dpm++", "euler", "heun"}
    with pytest.raises(FundiffError, match="choose one of ddpm, ddim, dpm\\+\\+, euler, heun"):
        samplers.get_sampler("unipc")
    with pytest.raises(FundiffError, match="takes no eta; eta applies to ddim"):
        samplers.get_sampler("dpm++", eta=0.5)
    for bad in (5.0, -0.1, float("nan")):
        with pytest.raises(FundiffError, match="eta must be in \\[0, 1\\]"):
            samplers.get_sampler("ddim", eta=bad)


def test_ddim_eta_reaches_the_step():
    """eta = 0 ignores the generator; eta = 1 draws noise from it."""
    den = FakeDenoiser(30)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    cond = den.encode(["a", "b"])

    def run(eta, seed):
        g = torch.Generator().manual_seed(seed)
        return samplers.sample(den, x_T, [29, 20, 10], cond=cond, generator=g, sampler=samplers.DDIM(eta=eta))

    torch.testing.assert_close(run(0.0, 1), run(0.0, 2), rtol=0, atol=0)
    assert not torch.allclose(run(1.0, 1), run(1.0, 2))


class FixedOutputDenoiser:
    """eps = 0.1 x_t + a fixed per-timestep table, v = a fixed per-timestep table in [-1, 1] (learned_range)."""

    traits = ModelTraits()  # no preferences: the defaults (ddpm, eps)

    channels, image_size, value_range = 2, 4, (-1.0, 1.0)

    def __init__(self, schedule: NoiseSchedule, *, learned: bool = True):
        g = torch.Generator().manual_seed(11)
        shape = (schedule.T, 1, self.channels, self.image_size, self.image_size)
        self.schedule, self.learned = schedule, learned
        self.eps_table = torch.randn(shape, generator=g)
        self.v_table = torch.randn(shape, generator=g).tanh()

    def encode(self, prompts):
        return torch.zeros(len(prompts), 1)

    def __call__(self, x_t, t, cond):
        eps = 0.1 * x_t + self.eps_table[t, 0]
        return Prediction(eps, self.v_table[t, 0] if self.learned else None)

    def output(self, x_t, t):
        """The same prediction as one (B, 2C, H, W) tensor: diffusers' layout for learned_range."""
        pred = self(x_t, torch.full((x_t.shape[0],), t), None)
        return torch.cat([pred.eps, pred.v], 1) if self.learned else pred.eps


def _diffusers():
    return pytest.importorskip("diffusers")


def test_sample_with_learned_variance_matches_diffusers_ddpm_learned_range():
    """samplers.sample end to end (ancestral steps, Nichol & Dhariwal 2021 Eq. 15 variance) against a loop of
    diffusers' DDPMScheduler(variance_type="learned_range") steps: same outputs, same generator, same noise."""
    diffusers = _diffusers()
    schedule = NoiseSchedule.cosine(100)
    den = FixedOutputDenoiser(schedule)
    timesteps = ts.strided(100, stride=9)
    theirs = diffusers.DDPMScheduler(
        num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", variance_type="learned_range", clip_sample=False
    )
    theirs.set_timesteps(timesteps=timesteps)
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))

    mine = samplers.sample(den, x_T, timesteps, cond=den.encode([""] * 3), generator=torch.Generator().manual_seed(2))
    g, x = torch.Generator().manual_seed(2), x_T
    for t in timesteps:
        x = theirs.step(den.output(x, t), t, x, generator=g).prev_sample
    torch.testing.assert_close(mine, x, rtol=1e-4, atol=1e-4)

    fixed = samplers.sample(
        FixedOutputDenoiser(schedule, learned=False), x_T, timesteps, cond=den.encode([""] * 3),
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    assert not torch.allclose(mine, fixed, atol=1e-2)  # the learned variance is used, not ignored


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_ddim_sample_with_eta_matches_diffusers_ddim(eta):
    """samplers.sample with DDIM steps (Song et al. 2021, Eq. 12) and eta > 0 against diffusers' DDIMScheduler,
    its last step to the clean image included; both draw each step's noise from the same generator."""
    diffusers = _diffusers()
    schedule = NoiseSchedule.linear(100)
    den = FixedOutputDenoiser(schedule, learned=False)
    theirs = diffusers.DDIMScheduler(
        num_train_timesteps=100, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=True,
    )  # fmt: skip
    theirs.set_timesteps(10)
    timesteps = theirs.timesteps.tolist()  # t - T // steps, as diffusers' DDIM steps; ends at 0
    x_T = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(1))

    mine = samplers.sample(
        den,
        x_T,
        timesteps,
        cond=den.encode([""] * 3),
        generator=torch.Generator().manual_seed(2),
        sampler=samplers.DDIM(eta=eta),
    )
    g, x = torch.Generator().manual_seed(2), x_T
    for t in timesteps:
        x = theirs.step(den.output(x, t), t, x, eta=eta, generator=g).prev_sample
    torch.testing.assert_close(mine, x, rtol=1e-4, atol=1e-4)
