import math

import pytest
import torch

from fundiff import timesteps as ts_lib
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule


@pytest.fixture
def diffusers():
    """diffusers, for the tests that compare against its schedulers (the others run without it)."""
    return pytest.importorskip("diffusers")


def _ddpm(T=300, schedule="linear", variance_type="fixed_small", timesteps=None):
    import diffusers

    sched = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear" if schedule == "linear" else "squaredcos_cap_v2",
        variance_type=variance_type,
        clip_sample=False,
    )
    sched.set_timesteps(timesteps=timesteps) if timesteps else sched.set_timesteps(T)
    return sched


def test_linear_schedule_pinned_values():
    s = NoiseSchedule.linear(300)
    assert s.T == 300
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    assert s.abar[0].item() == pytest.approx(0.9999, abs=1e-12)
    # pinned: abar_{299} of the write-up's schedule (float64)
    assert s.abar[-1].item() == pytest.approx(0.048058428944294, rel=1e-12)
    assert s.abar[149].item() == pytest.approx(
        math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 299) for i in range(150)), rel=1e-12
    )
    assert s.abar.dtype == torch.float64
    assert bool((s.abar[1:] < s.abar[:-1]).all())


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_abar_matches_diffusers(kind, diffusers):
    T = 300 if kind == "linear" else 1000
    ours = NoiseSchedule.from_name(kind, T)
    theirs = _ddpm(T, kind)
    torch.testing.assert_close(ours.abar.float(), theirs.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)


def test_q_sample_matches_diffusers_add_noise(diffusers):
    s = NoiseSchedule.linear(300)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 28, 28, generator=g)
    t = torch.tensor([0, 10, 150, 299])
    torch.testing.assert_close(s.q_sample(x0, t, eps), _ddpm().add_noise(x0, eps, t), rtol=1e-5, atol=1e-5)


def test_q_sample_statistics_variance_is_one_minus_abar():
    s = NoiseSchedule.linear(300)
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    x_t = s.q_sample(x0, 100, torch.randn(x0.shape, generator=g))
    abar = s.abar[100].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(abar) * 0.7, abs=0.02)
    assert x_t.var().item() == pytest.approx(1 - abar, rel=0.05)


def test_x0_from_eps_inverts_q_sample():
    s = NoiseSchedule.linear(300)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    for t in (0, 57, 299):
        torch.testing.assert_close(s.x0_from_eps(s.q_sample(x0, t, eps), t, eps), x0, rtol=1e-4, atol=1e-4)


def _compare_steps(ours, theirs, timesteps, C=1, learned=False):
    """Step both schedulers along ``timesteps`` (ending at t = 0, the step to the clean image) with the same
    model outputs and the same noise; diffusers adds noise only for t > 0, fundiff only for t' >= 0: the same steps."""
    assert timesteps[-1] == 0
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, C, 8, 8, generator=g)
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        out = torch.randn(2, 2 * C if learned else C, 8, 8, generator=g)
        if learned:
            out[:, C:] = out[:, C:].tanh()
        eps, v = (out[:, :C], out[:, C:]) if learned else (out, None)
        seed = 100 + i
        ref = theirs.step(out, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        mine, _ = ours.p_step(x, eps, t, t_prev, v=v, noise=noise)
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
        x = ref


def test_p_step_matches_diffusers_stride_1(diffusers):
    _compare_steps(NoiseSchedule.linear(300), _ddpm(), ts_lib.full(300))


def test_p_step_matches_diffusers_custom_strided_timesteps(diffusers):
    timesteps = ts_lib.strided(300, stride=30)
    assert timesteps[0] == 299 and timesteps[-1] == 0
    _compare_steps(NoiseSchedule.linear(300), _ddpm(timesteps=timesteps), timesteps)


def test_p_step_matches_diffusers_learned_range_cosine(diffusers):
    timesteps = ts_lib.strided(1000, stride=30)
    theirs = _ddpm(1000, "cosine", variance_type="learned_range", timesteps=timesteps)
    _compare_steps(NoiseSchedule.cosine(1000), theirs, timesteps, C=3, learned=True)


def test_strided_coefficient_is_errata_item_3():
    s = NoiseSchedule.linear(300)
    t, tp = 200, 170
    abar_t, abar_p = s.abar[t].item(), s.abar[tp].item()
    beta = 1 - abar_t / abar_p
    x_t, x0 = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    mean, var = s.posterior(x_t, x0, t, tp)
    assert mean.item() == pytest.approx(math.sqrt(abar_p) * beta / (1 - abar_t), rel=1e-6)
    assert var.item() == pytest.approx(beta * (1 - abar_p) / (1 - abar_t), rel=1e-6)


def test_final_step_adds_no_noise_and_ddim_eta0_is_deterministic():
    s = NoiseSchedule.linear(300)
    x, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    a, _ = s.p_step(x, eps, 0, -1, generator=torch.Generator().manual_seed(0))
    b, _ = s.p_step(x, eps, 0, -1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    abar_0 = float(s.abar[0])
    torch.testing.assert_close(a, (x - (1 - abar_0) ** 0.5 * eps) / abar_0**0.5)  # the last step lands on x0_hat
    c, x0 = s.ddim_step(x, eps, 5, -1, eta=0.0)
    torch.testing.assert_close(c, x0)
    abar_5 = float(s.abar[5])
    torch.testing.assert_close(c, (x - (1 - abar_5) ** 0.5 * eps) / abar_5**0.5)


def _ddim_scheduler(diffusers, T=300):
    return diffusers.DDIMScheduler(
        num_train_timesteps=T,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,  # abar_{-1} = 1: the last step lands on the clean image, as in fundiff
    )


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_diffusers_every_step_to_the_last(eta, diffusers):
    """Song et al. 2021, Eq. 12, over diffusers' own 10-step list, its last step (t = 0 -> clean) included;
    the same model outputs and, for eta > 0, the same noise (diffusers' ``variance_noise``)."""
    theirs = _ddim_scheduler(diffusers)
    theirs.set_timesteps(10)
    s = NoiseSchedule.linear(300)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1, 8, 8, generator=g)
    steps = theirs.timesteps.tolist()
    assert steps[-1] == 0
    for t in steps:
        t_prev = max(t - 300 // 10, -1)  # diffusers' DDIM steps to t - T // steps; below 0 both use abar = 1
        eps, noise = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        ref = theirs.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        mine, x0_hat = s.ddim_step(x, eps, t, t_prev, eta=eta, noise=noise)
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
        x = ref
    torch.testing.assert_close(mine, x0_hat)  # the last step adds no noise: it returns the clean estimate


def test_ddim_with_eta_one_has_the_ddpm_posterior_variance():
    s = NoiseSchedule.linear(300)
    t, t_prev = 200, 170
    x, eps, noise = torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    quiet, _ = s.ddim_step(x, eps, t, t_prev, eta=1.0, noise=torch.zeros_like(noise))
    noisy, _ = s.ddim_step(x, eps, t, t_prev, eta=1.0, noise=noise)
    _, var = s.posterior(x, x, t, t_prev)
    assert (noisy - quiet).item() == pytest.approx(math.sqrt(var.item()), rel=1e-6)


def test_timestep_lists_and_validation():
    assert ts_lib.full(300)[0] == 299 and ts_lib.full(300)[-1] == 0 and len(ts_lib.full(300)) == 300
    assert ts_lib.strided(1000, stride=30)[:3] == [999, 969, 939]
    assert ts_lib.strided(300, steps=300) == ts_lib.full(300)
    ten = ts_lib.strided(300, steps=10)
    assert ten[0] == 299 and ten[-1] == 0 and len(ten) == 10
    assert ts_lib.from_start(ts_lib.strided(300, stride=30), 2)[0] == 239
    for bad in ([], [5, 5], [300, 1], [3, -1]):
        with pytest.raises(FundiffError):
            ts_lib.validate(bad, 300)
    with pytest.raises(FundiffError):
        ts_lib.strided(300, steps=0)
    with pytest.raises(FundiffError):
        ts_lib.from_start([3, 2, 1], 3)
    with pytest.raises(FundiffError, match="linear, cosine"):
        NoiseSchedule.from_name("sigmoid", 10)


def test_q_sample_at_minus_one_is_the_clean_image_and_out_of_range_fails():
    s = NoiseSchedule.linear(30)
    x0, eps = torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    torch.testing.assert_close(s.q_sample(x0, -1, eps), x0)
    for bad in (-2, 30):
        with pytest.raises(FundiffError, match=r"-1\.\.29"):
            s.q_sample(x0, bad, eps)


# -- the per-level coefficients (NoiseSchedule.at / scalar_at) --------------------------------------------------
FIELDS = ("abar", "alpha", "sigma", "log_snr", "tau", "flow_scale")
# (abar, alpha, sigma, log_snr, tau, flow_scale) at t, computed by hand in float64 with `math` from the betas
PINNED = {
    ("linear", 300): {
        0: (0.9999, 0.9999499987499375, 0.009999999999999449, 9.21024036697596, 0.009901480283555546,
            1.009949998749937),
        150: (0.4623452376194675, 0.6799597323514588, 0.7332494544017967, -0.15090476897727514, 0.5188541521488291,
              1.4132091867532555),
        299: (0.04805842894429403, 0.21922232765914615, 0.9756749310378462, -2.9860861176577265, 0.8165345798029505,
              1.1948972586969924),
    },
    ("cosine", 1000): {
        0: (0.999958715775178, 0.9999793576745362, 0.0064252801356804, 10.094988811457432, 0.0063843904273541835,
            1.0064046378102165),
        150: (0.9400000146503524, 0.9695359790386081, 0.2449489443734093, 2.7515355728000004, 0.20168957197528725,
              1.2144849234120174),
        999: (2.4287669070348567e-09, 4.9282521313695554e-05, 0.9999999987856165, -19.83588215162398,
              0.9999507199072737, 1.0000492813069302),
    },
}  # fmt: skip


def _fields(c):
    return tuple(getattr(c, f) for f in FIELDS)


@pytest.mark.parametrize("kind,T", list(PINNED))
def test_coefficients_pinned_at_the_ends_and_the_middle(kind, T):
    s = NoiseSchedule.from_name(kind, T)
    for t, want in PINNED[(kind, T)].items():
        got = _fields(s.scalar_at(t))
        assert all(isinstance(v, float) for v in got)
        assert got == pytest.approx(want, rel=1e-12, abs=0)
    clean = s.scalar_at(-1)  # t = -1 is the clean image
    assert _fields(clean) == (1.0, 1.0, 0.0, math.inf, 0.0, 1.0)
    # the identities behind the fields, on every level
    for t in range(T):
        c = s.scalar_at(t)
        assert c.alpha**2 + c.sigma**2 == pytest.approx(1.0, rel=1e-14)
        assert math.exp(c.log_snr) == pytest.approx(c.abar / (1 - c.abar), rel=1e-12)
        assert c.tau * c.flow_scale == pytest.approx(c.sigma, rel=1e-14)
    if kind == "cosine":  # Nichol & Dhariwal 2021, Eq. 17 in closed form: abar_t = f(t + 1) / f(0) (betas unclipped)
        f = [math.cos((u / T + 0.008) / 1.008 * math.pi / 2) ** 2 for u in (0, 151)]
        assert s.scalar_at(150).abar == pytest.approx(f[1] / f[0], rel=1e-12)


@pytest.mark.parametrize("kind,T", list(PINNED))
def test_batched_coefficients_broadcast_in_the_batchs_dtype_and_equal_the_scalars(kind, T):
    s = NoiseSchedule.from_name(kind, T)
    t = torch.tensor([-1, 0, 150, T - 1])
    exact = s.at(t, like=torch.zeros(4, 3, 5, 5, dtype=torch.float64))
    single = s.at(t, like=torch.zeros(4, 3, 5, 5))  # float32: cast from the float64 values
    for name in FIELDS:
        want = [getattr(s.scalar_at(int(k)), name) for k in t]
        got64, got32 = getattr(exact, name), getattr(single, name)
        assert got64.shape == got32.shape == (4, 1, 1, 1)
        assert got64.dtype == torch.float64 and got32.dtype == torch.float32
        assert got64.flatten().tolist() == want  # bit for bit: one table
        assert torch.equal(got32.flatten(), torch.tensor(want, dtype=torch.float64).float())
    # any batch rank: (B,) gives (B,), (B, C, D, H, W) gives (B, 1, 1, 1, 1); an int t serves every row
    assert s.at(t, like=torch.zeros(4)).alpha.shape == (4,)
    assert s.at(t, like=torch.zeros(4, 1, 2, 2, 2)).sigma.shape == (4, 1, 1, 1, 1)
    row = s.at(150, like=torch.zeros(3, 1, 2, 2))
    assert row.tau.shape == (3, 1, 1, 1) and row.tau.flatten().tolist() == [single.tau[2].item()] * 3
    assert s.at(0, like=torch.zeros(2, 1, device="meta")).abar.device.type == "meta"  # on like's device
    assert s.abar_at(t).tolist() == exact.abar.flatten().tolist()  # the bare table entry


def test_coefficients_of_bad_timesteps_are_one_line_errors():
    s = NoiseSchedule.linear(30)
    x = torch.zeros(2, 1, 4, 4)
    for bad in (-2, 30, torch.tensor([0, 30])):
        with pytest.raises(FundiffError, match=r"timesteps must lie in -1\.\.29"):
            s.at(bad, like=x)
    with pytest.raises(FundiffError, match=r"timesteps must lie in -1\.\.29"):
        s.scalar_at(-2)
    for bad in (torch.tensor([0, 1, 2]), torch.zeros(2, 1, dtype=torch.long)):
        with pytest.raises(FundiffError, match=r"an int or one per image \(2\)"):
            s.at(bad, like=x)


def test_the_flow_schedules_coefficients_are_the_flow_grid():
    """flow.schedule(T) is the VP schedule whose level t sits at flow time tau_t = (t + 1) / (T + 1) (flow.grid)."""
    from fundiff import flow

    T = 1000
    s = flow.schedule(T)  # abar -> betas -> cumprod: sigma of the near-clean levels keeps ~1e-10 of 1 - abar ~ 1e-6
    for t in (-1, 0, 150, T - 1):
        c = s.scalar_at(t)
        tau = (t + 1) / (T + 1)
        assert c.tau == pytest.approx(tau, rel=1e-9, abs=0)
        assert c.abar == pytest.approx((1 - tau) ** 2 / ((1 - tau) ** 2 + tau**2), rel=1e-12)
        assert c.flow_scale == pytest.approx(1 / math.sqrt((1 - tau) ** 2 + tau**2), rel=1e-12)
    every = s.at(torch.arange(T), like=torch.zeros(T, dtype=torch.float64))
    torch.testing.assert_close(every.tau, flow.grid(T), rtol=1e-9, atol=0)
