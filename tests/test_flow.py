"""Flow matching and the other training objectives: targets, the VP <-> flow-time map, Euler / Heun, CFG."""

import math

import pytest
import torch

from fundiff import flow, samplers, training
from fundiff import timesteps as ts
from fundiff.denoisers import Prediction, UNetDenoiser
from fundiff.errors import FundiffError
from fundiff.guidance import CFG
from fundiff.models.unet import UNet, UNetConfig
from fundiff.schedules import NoiseSchedule
from helpers import synthetic_data, tiny_config


def test_flow_grid_and_its_vp_schedule_pinned():
    tau = flow.grid(4)
    assert tau.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    sched = flow.schedule(4)
    # abar(tau) = (1 - tau)^2 / ((1 - tau)^2 + tau^2): 0.64/0.68, 0.36/0.52, 0.16/0.52, 0.04/0.68
    assert sched.abar.tolist() == pytest.approx([0.64 / 0.68, 0.36 / 0.52, 0.16 / 0.52, 0.04 / 0.68])
    # the schedule's flow frame of level t is the grid's flow time: tau_t = sigma_t / (alpha_t + sigma_t)
    x0, eps = torch.randn(4, 1, 2, 2, dtype=torch.float64), torch.randn(4, 1, 2, 2, dtype=torch.float64)
    c = sched.at(torch.arange(4), like=x0)
    assert c.tau.flatten().tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8], abs=1e-15)
    alpha, sigma = sched.abar.sqrt(), (1 - sched.abar).sqrt()
    assert torch.allclose(c.flow_scale.flatten(), alpha + sigma, atol=0, rtol=1e-15)
    # (alpha + sigma)^2 = abar + (1 - abar) + 2 alpha sigma: 1 + 2 (1 - tau) tau / ((1 - tau)^2 + tau^2)
    want = [1 + 0.32 / 0.68, 1 + 0.48 / 0.52, 1 + 0.48 / 0.52, 1 + 0.32 / 0.68]
    assert (c.flow_scale.flatten() ** 2).tolist() == pytest.approx(want, rel=1e-14)
    # x_tau = x_vp / (alpha + sigma) is the straight path (1 - tau) x0 + tau eps
    x_vp = c.alpha * x0 + c.sigma * eps
    assert torch.allclose(x_vp / c.flow_scale, flow.interpolate(x0, eps, tau), atol=1e-15)
    with pytest.raises(FundiffError, match="T >= 2"):
        flow.grid(1)


def test_flow_target_and_time_laws():
    x0, eps = torch.full((2, 1, 1, 1), 0.25), torch.full((2, 1, 1, 1), -1.0)
    assert flow.velocity(x0, eps).flatten().tolist() == [-1.25, -1.25]
    assert flow.interpolate(x0, eps, torch.tensor([0.0, 1.0])).flatten().tolist() == [0.25, -1.0]
    g = torch.Generator().manual_seed(0)
    for law in flow.TIME_LAWS:
        tau = flow.sample_times(20000, law=law, generator=g)
        assert 0 < tau.min() and tau.max() < 1
        assert abs(tau.mean().item() - 0.5) < 0.01  # both laws are symmetric about 1/2
    spread = {law: flow.sample_times(20000, law=law, generator=g).std().item() for law in flow.TIME_LAWS}
    assert spread["uniform"] == pytest.approx(1 / math.sqrt(12), abs=0.01)
    assert spread["logit-normal"] < 0.25  # concentrated on the middle times
    assert spread["logit-normal"] < spread["mixed"] < spread["uniform"]
    near_data = {
        law: float((flow.sample_times(20000, law=law, generator=g) < 0.05).float().mean()) for law in flow.TIME_LAWS
    }
    assert near_data["logit-normal"] < 0.002 and near_data["mixed"] == pytest.approx(0.025, abs=0.005)
    with pytest.raises(FundiffError, match="choose one of uniform, logit-normal, mixed"):
        flow.sample_times(3, law="beta")


def test_low_times_add_the_nearly_clean_end_and_nothing_else():
    """low_share: that share of the times uniform in (0, LOW_TAU_MAX); 0 draws exactly the law's times (a run
    without it trains as before)."""
    draw = lambda **kw: flow.sample_times(40000, law="logit-normal", generator=torch.Generator().manual_seed(3), **kw)  # noqa: E731
    plain, low = draw(), draw(low_share=0.25)
    assert torch.equal(draw(low_share=0.0), plain)
    assert float((plain < flow.LOW_TAU_MAX).float().mean()) == pytest.approx(0.014, abs=0.003)
    below = low < flow.LOW_TAU_MAX  # the low draws, and the law's own 1.4% of the other 75%
    assert float(below.float().mean()) == pytest.approx(0.25 + 0.75 * 0.014, abs=0.01)
    assert 0 < low.min() and low.max() < 1
    hist = torch.histc(low[low < flow.LOW_TAU_MAX], bins=4, min=0, max=flow.LOW_TAU_MAX)
    assert hist.min() / hist.max() > 0.8  # uniform over the low end
    with pytest.raises(FundiffError, match=r"share of low flow times must be in \[0, 1\)"):
        flow.sample_times(3, law="uniform", low_share=1.0)


class _Echo(torch.nn.Module):
    """A 'UNet' that returns what ``fn(x, t)`` says, recording its inputs."""

    def __init__(self, fn, kind="time"):
        super().__init__()
        self.config = UNetConfig(kind=kind, hidden=4)
        self.fn, self.seen = fn, []
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t, c=None):
        self.seen.append((x.clone(), t.clone()))
        return self.fn(x, t)


@pytest.mark.parametrize("objective", ["eps", "v", "flow"])
def test_each_objective_is_served_as_the_true_noise(objective):
    """A model that predicts its objective's exact target gives back the exact eps at every level."""
    T = 30
    sched = flow.schedule(T) if objective == "flow" else NoiseSchedule.linear(T)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(5, 1, 28, 28, generator=g), torch.randn(5, 1, 28, 28, generator=g)
    t = torch.tensor([0, 7, 13, 22, 29])
    abar = sched.abar[t].float().view(-1, 1, 1, 1)
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    x_t = alpha * x0 + sigma * eps

    def oracle(x, t_in):
        if objective == "eps":
            return eps
        if objective == "v":
            return alpha * eps - sigma * x0
        return flow.velocity(x0, eps)

    model = _Echo(oracle)
    den = UNetDenoiser(model, sched, objective=objective)
    got = den(x_t, t, den.encode([""] * 5)).eps
    assert torch.allclose(got, eps, atol=2e-5)
    x_in, t_in = model.seen[-1]
    if objective == "flow":  # the UNet sees x_tau and tau, not x_t and t / (T - 1)
        tau = flow.grid(T)[t].float()
        assert torch.allclose(t_in, tau)
        assert torch.allclose(x_in, flow.interpolate(x0, eps, tau), atol=1e-5)
    else:
        assert torch.allclose(t_in, t.float() / (T - 1))
        assert torch.equal(x_in, x_t)


def test_training_targets_pinned():
    """The loss of each objective is the MSE to its target, replaying the training generator."""
    images, labels = synthetic_data(8)
    x0 = images[:8].unsqueeze(1).float() / 255
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = UNet(UNetConfig(kind="time", hidden=4)).eval()
    for objective, weight in (("eps", "none"), ("v", "none"), ("eps", "min-snr"), ("v", "min-snr"), ("flow", "none")):
        cfg = tiny_config("time", objective=objective, loss_weight=weight, T=50)
        sched = training.schedule_of_config(cfg)
        loss = training.batch_loss(net, cfg, sched, x0, labels[:8], torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)
        eps = torch.randn(x0.shape, generator=g)
        if objective == "flow":
            tau = torch.rand(8, generator=g)
            want = (net(flow.interpolate(x0, eps, tau), tau) - (eps - x0)).pow(2).mean()
        else:
            t = torch.randint(0, 50, (8,), generator=g)
            abar = sched.abar[t].float()
            a, s = abar.sqrt().view(-1, 1, 1, 1), (1 - abar).sqrt().view(-1, 1, 1, 1)
            target = eps if objective == "eps" else a * eps - s * x0
            err = (net(a * x0 + s * eps, t.float() / 49) - target).pow(2).mean(dim=(1, 2, 3))
            snr = abar / (1 - abar)
            w = torch.ones(8) if weight == "none" else snr.clamp(max=5) / (snr if objective == "eps" else snr + 1)
            want = (err * w).mean()
        assert loss.item() == pytest.approx(want.item(), rel=1e-5), (objective, weight)


def test_min_snr_weights_pinned():
    sched = NoiseSchedule.linear(300)
    t = torch.tensor([0, 100, 299])
    x0, eps = torch.zeros(3, 1, 1, 1), torch.zeros(3, 1, 1, 1)
    _, w_eps = training.diffusion_target(sched, x0, eps, t, "eps", "min-snr")
    _, w_v = training.diffusion_target(sched, x0, eps, t, "v", "min-snr")
    snr = (sched.abar[t] / (1 - sched.abar[t])).tolist()
    assert snr[0] == pytest.approx(9999) and 1 < snr[1] < 5 and snr[2] < 0.06  # beta_0 = 1e-4
    # SNR > 5: eps weighted 5 / SNR, v 5 / (SNR + 1); SNR < 5: eps 1, v SNR / (SNR + 1)
    assert w_eps.tolist() == pytest.approx([5 / 9999, 1.0, 1.0], rel=1e-3)
    assert w_v.tolist() == pytest.approx([5 / 10000, snr[1] / (snr[1] + 1), snr[2] / (snr[2] + 1)], rel=1e-3)
    assert training.diffusion_target(sched, x0, eps, t, "eps", "none")[1] is None


def test_bad_objective_options_are_one_line_errors():
    with pytest.raises(FundiffError, match="unknown objective 'x0'; choose one of eps, v, flow"):
        tiny_config(objective="x0")
    with pytest.raises(FundiffError, match="min-snr weighting applies to the eps and v objectives"):
        tiny_config(objective="flow", loss_weight="min-snr")
    with pytest.raises(FundiffError, match="unknown flow time law"):
        tiny_config(objective="flow", flow_times="beta")


class _Gaussian:
    """The exact denoiser of Gaussian data x0 ~ N(m, s^2) (per pixel) on ``schedule``: the probability-flow
    ODE then has a closed-form solution, (x_t - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant."""

    def __init__(self, schedule, m=0.3, s=0.5):
        self.schedule, self.m, self.s = schedule, m, s

    def level(self, t):
        abar = float(self.schedule.abar_at(t))
        return math.sqrt(abar), math.sqrt(1 - abar)

    def __call__(self, x, t, cond):
        alpha, sigma = self.level(int(t[0]))
        x0 = self.m + alpha * self.s**2 / (alpha**2 * self.s**2 + sigma**2) * (x - alpha * self.m)
        return Prediction((x - alpha * x0) / sigma)

    def exact(self, x_T, t_T):
        alpha, sigma = self.level(t_T)
        return self.m + self.s * (x_T - alpha * self.m) / math.sqrt(alpha**2 * self.s**2 + sigma**2)


def _run(sampler, den, x_T, steps):
    timesteps = ts.strided(den.schedule.T, steps=steps)
    return samplers.sample(den, x_T, timesteps, cond=torch.zeros(x_T.shape[0], 0), sampler=sampler)


def test_euler_is_ddim_with_eta_zero_and_heun_is_second_order():
    den = _Gaussian(flow.schedule(1000))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for steps in (3, 10):
        assert torch.allclose(_run("euler", den, x_T, steps), _run("ddim", den, x_T, steps), atol=1e-10)
    exact = den.exact(x_T, 999)

    def err(sampler, steps):
        return (_run(sampler, den, x_T, steps) - exact).abs().max().item()

    e_euler = [err("euler", n) for n in (10, 20, 40)]
    e_heun = [err("heun", n) for n in (10, 20, 40)]
    assert e_heun[-1] < e_euler[-1] / 10
    for a, b in zip(e_euler, e_euler[1:]):
        assert 1.6 < a / b < 2.6  # first order: half the error per doubling
    for a, b in zip(e_heun, e_heun[1:]):
        assert a / b > 3.0  # second order: a quarter


def test_euler_and_heun_are_exact_on_straight_paths():
    """Data that is one point makes every flow path a straight line: Euler and Heun land on it in any step count."""
    T = 100
    target = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(4))

    def straight(x, tau):  # the exact velocity towards the single data point: (x_tau - x0) / tau
        return (x - target) / tau.view(-1, 1, 1, 1)

    den = UNetDenoiser(_Echo(straight), flow.schedule(T), objective="flow")
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    for sampler in ("euler", "heun"):
        for steps in (1, 2, 7):
            out = _run(sampler, den, x_T, steps)
            assert torch.allclose(out, target, atol=2e-3), (sampler, steps)


def test_heun_calls_the_denoiser_twice_per_step_but_once_on_the_last():
    calls = []
    inner = _Gaussian(flow.schedule(50))

    def counting(x, t, cond):
        calls.append(int(t[0]))
        return inner(x, t, cond)

    counting.schedule = inner.schedule
    _run("heun", counting, torch.randn(1, 1, 4, 4, dtype=torch.float64), 5)
    assert len(calls) == 2 * 5 - 1
    with pytest.raises(FundiffError, match="start it with predict"):
        samplers.Heun().start(inner.schedule)


def test_cfg_on_a_flow_model_guides_the_velocity():
    """CFG on the served eps equals eps of the guided velocity u_null + w (u_c - u_null)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        net = UNet(UNetConfig(kind="class", hidden=4)).eval()
    sched = flow.schedule(40)
    den = UNetDenoiser(net, sched, objective="flow")
    x_t = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([35, 20, 4])
    cond = den.encode(["3", "7", "0"])
    got = CFG(den, 5.0)(x_t, t, cond).eps
    alpha, sigma = sched.abar[t].sqrt().view(-1, 1, 1, 1), (1 - sched.abar[t]).sqrt().view(-1, 1, 1, 1)
    tau = (sigma / (alpha + sigma)).float()  # flow.py's map, by hand in float64
    x_tau = x_t / (alpha + sigma).float()
    with torch.no_grad():
        u_c, u_0 = net(x_tau, tau.flatten(), cond), net(x_tau, tau.flatten(), torch.zeros_like(cond))
    want = flow.eps_from_velocity(x_tau, u_0 + 5.0 * (u_c - u_0), tau)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_flow_run_trains_samples_and_edits_through_the_common_paths(tmp_path):
    from fundiff import edits
    from fundiff.backends import runs

    images, labels = synthetic_data(48)
    cfg = tiny_config("class", objective="flow", epochs=1, T=100)
    training.train(cfg, tmp_path / "flow", data=(images, labels), progress=False)
    den = runs.load_denoiser(str(tmp_path / "flow"), precision="fp32")
    assert den.traits.objective == "flow" and den.schedule.kind == "flow" and den.traits.default_sampler == "heun"
    g = torch.Generator().manual_seed(0)
    x = samplers.sample_from_noise(CFG(den, 3.0), den.encode(["1", "2"]), ts.strided(100, steps=6), generator=g,
                                   sampler="heun")  # fmt: skip
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    x0 = images[:2].unsqueeze(1).float() / 255
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 10:20, 10:20] = 1
    out = edits.inpaint(den, x0, mask, ts.strided(100, steps=5), cond=den.encode(["", ""]), generator=g,
                        sampler="euler")  # fmt: skip
    assert torch.equal(out[..., :10, :], x0[..., :10, :])  # inpainting keeps the known pixels


def test_a_flow_unet_says_heun_and_flow_and_wrappers_forward_its_traits():
    from fundiff.composers import Anagram, Hybrid
    from fundiff.denoisers import FLOW_DEFAULT_SAMPLER
    from fundiff.traits import DEFAULT_SAMPLER, ModelTraits
    from fundiff.views import GaussianFilter

    net = UNet(UNetConfig(kind="class", hidden=4)).eval()
    flow_den = UNetDenoiser(net, flow.schedule(10), objective="flow", dataset="mnist")
    assert flow_den.traits == ModelTraits(default_sampler="heun", objective="flow", dataset="mnist")
    assert FLOW_DEFAULT_SAMPLER == "heun" and samplers.default_sampler_of(flow_den) == "heun"
    one, two = flow_den.encode(["1"]), flow_den.encode(["2"])
    wrapped = [
        CFG(flow_den, 3.0),
        Anagram(flow_den, ["identity", "rot180"], [one, two]),
        Hybrid(CFG(flow_den, 3.0), one, two, GaussianFilter(3, 1.0)),
    ]
    for w in wrapped:
        assert w.traits is flow_den.traits and samplers.default_sampler_of(w) == "heun", type(w).__name__
    for objective in ("eps", "v"):
        den = UNetDenoiser(net, NoiseSchedule.linear(10), objective=objective)
        assert (den.traits.default_sampler, den.traits.objective) == ("ddpm", objective)
        assert DEFAULT_SAMPLER == samplers.DEFAULT_SAMPLER == "ddpm" == samplers.default_sampler_of(CFG(den, 3.0))
        assert den.traits.dataset is None and den.traits.technique_defaults is None
        assert den.traits.pipeline_timesteps is None
    for gone in ("default_sampler", "objective", "dataset", "autocast_dtype", "memory_format"):
        assert not hasattr(flow_den, gone) and not hasattr(wrapped[0], gone), gone  # one source: the traits
    with pytest.raises(FundiffError, match="unknown objective 'x0'; choose one of eps, v, flow"):
        UNetDenoiser(net, NoiseSchedule.linear(10), objective="x0")


def test_the_default_sampler_is_the_models_and_wrappers_forward_it():
    """The sampler a model gets when none is asked for, as every command takes it (get_sampler of
    default_sampler_of): Heun for a flow model, through CFG and composers too, with Heun's 2 n - 1 denoiser
    calls for n steps; DDPM for eps and v models and for a Denoiser that names none, whose samples then
    depend on the generator's noise."""
    from fundiff.composers import Anagram

    def default(den):
        return samplers.get_sampler(samplers.default_sampler_of(den))

    net = UNet(UNetConfig(kind="class", hidden=4)).eval()
    flow_den = UNetDenoiser(net, flow.schedule(10), objective="flow")
    anagram = Anagram(flow_den, ["identity", "rot180"], list(flow_den.encode(["1", "2"])))
    for den in (flow_den, CFG(flow_den, 3.0), anagram):
        assert isinstance(default(den), samplers.Heun), den
    calls = []

    def counting(x, t, cond):
        calls.append(int(t[0]))
        return flow_den(x, t, cond)

    counting.schedule = flow_den.schedule
    x_T = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    samplers.sample(counting, x_T, [9, 6, 3, 0], cond=flow_den.encode(["1"]), sampler=default(flow_den))
    assert calls == [9, 6, 6, 3, 3, 0, 0]  # Heun: the step's start and end, one call on the last step
    for objective in ("eps", "v"):
        den = UNetDenoiser(net, NoiseSchedule.linear(10), objective=objective)
        for d in (den, CFG(den, 3.0)):
            assert isinstance(default(d), samplers.DDPM), (objective, d)

        def run(seed, den=den):
            g = torch.Generator().manual_seed(seed)
            return samplers.sample(den, x_T, [9, 5, 0], cond=den.encode(["1"]), generator=g, sampler=default(den))

        assert not torch.equal(run(1), run(2))  # ancestral steps draw noise
    from types import SimpleNamespace

    from fundiff.traits import ModelTraits

    assert isinstance(default(SimpleNamespace(traits=ModelTraits())), samplers.DDPM)  # a Denoiser that names none


# -- the CLI on flow models: `fundiff train --objective flow`, then sample / evaluate with the model's sampler --
@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory):
    """A tiny flow class and flow time model trained through `fundiff train`, and a tiny classifier."""
    from fundiff import cli, data
    from fundiff.models.classifier import ClassifierConfig
    from fundiff.training import ClassifierTrainConfig, train_classifier

    root = tmp_path_factory.mktemp("flow-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(32, seed=0 if train else 1))
        for kind in ("class", "time"):
            argv = ["train", kind, "--preset", "tiny", "--objective", "flow", "--T", "100", "--out", str(root / kind)]
            argv += ["--precision", "fp32", "--threads", "1", "--max-steps", "2", "--device", "cpu", "--no-progress"]
            assert cli.main(argv) == 0
    cfg = ClassifierTrainConfig(max_steps=2, batch_size=16, precision="fp32")
    train_classifier(cfg, root / "clf", data=synthetic_data(32), test_data=synthetic_data(16, seed=1), progress=False,
                     model_config=ClassifierConfig(width=4, features=8))  # fmt: skip
    return {"class": root / "class", "time": root / "time", "clf": root / "clf"}


def test_sample_without_sampler_uses_the_flow_models_heun(flow_runs, tmp_path):
    from fundiff import cli

    base = ["sample", "--model", str(flow_runs["class"]), "--class", "3", "--n", "2", "--steps", "4"]
    base += ["--precision", "fp32", "--threads", "1", "--device", "cpu"]
    for name, extra in [("default", []), ("heun", ["--sampler", "heun"]), ("ddpm", ["--sampler", "ddpm"])]:
        assert cli.main(base + ["--out", str(tmp_path / f"{name}.png"), *extra]) == 0
    default = (tmp_path / "default.png").read_bytes()
    assert default == (tmp_path / "heun.png").read_bytes()
    assert default != (tmp_path / "ddpm.png").read_bytes()


def test_evaluate_records_the_sampler_and_the_objective(flow_runs, tmp_path, monkeypatch, capsys):
    import json

    from fundiff import cli, data

    monkeypatch.setattr(data, "load_split", lambda name, root=None, train=True: synthetic_data(40 if train else 30))
    base = ["evaluate", "--model", str(flow_runs["time"]), "--classifier", str(flow_runs["clf"]), "--n", "6"]
    base += ["--steps", "3", "--precision", "fp32", "--threads", "1", "--device", "cpu"]
    assert cli.main(base + ["--out", str(tmp_path / "heun.json")]) == 0
    r = json.loads((tmp_path / "heun.json").read_text())
    assert (r["sampler"], r["objective"], r["steps"]) == ("heun", "flow", 3) and "eta" not in r
    assert "3 steps, sampler heun" in capsys.readouterr().out
    assert cli.main(base + ["--eta", "0.5", "--out", str(tmp_path / "ddim.json")]) == 0  # --eta alone: DDIM
    r = json.loads((tmp_path / "ddim.json").read_text())
    assert (r["sampler"], r["eta"], r["objective"]) == ("ddim", 0.5, "flow")
    assert "sampler ddim (eta 0.5)" in capsys.readouterr().out


def test_a_bad_objective_flag_is_a_one_line_parser_error(tmp_path, capsys):
    from fundiff import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "class", "--objective", "x0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert err.startswith(
        "fundiff train: error: argument --objective: invalid choice: 'x0' "
        "(choose from 'eps', 'v', 'flow', 'course-flow')"
    )
    assert not (tmp_path / "r").exists()
