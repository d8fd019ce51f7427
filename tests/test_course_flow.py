"""The course's flow-matching edition (`--preset course-flow`, objective course-flow) against a direct transcription
of the course's pseudo-code on tiny models: its training loss, its sampler (with CFG), its multiplicative time
conditioning, its preset; and every sampler and composer on a grid that reaches pure noise."""

import pytest
import torch
import torch.nn.functional as F

from fundiff import flow, samplers, training
from fundiff import timesteps as ts
from fundiff.composers import Anagram, Factorized
from fundiff.denoisers import UNetDenoiser
from fundiff.errors import FundiffError
from fundiff.guidance import CFG
from fundiff.models.unet import UNet, UNetConfig
from fundiff.training.objectives import batch_loss
from fundiff.views import FrequencyBands, GaussianFilter
from helpers import tiny_config


def _net(kind: str, **kw) -> UNet:
    torch.manual_seed(0)
    net = UNet(UNetConfig(kind=kind, hidden=4, **kw)).eval()
    for p in net.parameters():  # random weights large enough that the output depends on t and c
        p.data.normal_(0, 0.3)
    return net


def test_the_preset_is_the_courses_recipe():
    for kind, T in (("time", 50), ("class", 300)):
        cfg = training.preset_config("course-flow", kind)
        assert (cfg.hidden, cfg.batch_size, cfg.epochs, cfg.lr, cfg.lr_schedule) == (64, 64, 10, 1e-2, "exponential")
        assert (cfg.objective, cfg.flow_times, cfg.p_uncond, cfg.T, cfg.ema_decay) == ("course-flow", "uniform", 0.1,
                                                                                        T, 0.0)  # fmt: skip
        assert cfg.warmup_steps == 0 and cfg.sample_epochs == (1, 5, 10)
    assert training.preset_config("course-flow", "time").time_conditioning == "multiplicative"
    assert training.preset_config("course-flow", "class").time_conditioning == "additive"
    with pytest.raises(FundiffError, match="time model"):
        training.preset_config("course-flow", "class", time_conditioning="multiplicative")


def test_multiplicative_time_conditioning_is_unflatten_times_t1_and_up1_times_t2():
    net = _net("time", time_conditioning="multiplicative")
    x, t = torch.rand(3, 1, 28, 28), torch.rand(3)
    with torch.no_grad():
        e1 = net.e1(x)
        e2 = net.e2(e1)
        e3 = net.e3(e2)
        t1, t2 = net.fc1_t(t[:, None]), net.fc2_t(t[:, None])
        u0 = net.unflatten(net.flatten(e3)) * t1
        u1 = net.u1(torch.cat([u0, e3], 1)) * t2
        u2 = net.u2(torch.cat([u1, e2], 1))
        want = net.out(net.out_block(torch.cat([u2, e1], 1)))
        assert torch.allclose(net(x, t), want, atol=1e-6)
        additive = UNet(UNetConfig(kind="time", hidden=4))
        additive.load_state_dict(net.state_dict())
        assert (additive.eval()(x, t) - want).abs().max() > 1e-5  # the conditioning differs


def test_the_training_loss_is_the_courses():
    """The course: x1 data, x0 ~ N(0, I), t ~ U[0, 1], x_t = (1 - t) x0 + t x1, loss |u(x_t, t, c) - (x1 - x0)|^2,
    c dropped with probability p_uncond; the same draws from one generator."""
    cfg = tiny_config("class", objective="course-flow", T=50, flow_times="uniform")
    net = _net("class")
    x1, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    got = batch_loss(net, cfg, None, x1, y, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(x1.shape, generator=g)
    t = torch.rand(8, generator=g)
    keep = (torch.rand(8, generator=g) >= cfg.p_uncond).float()
    c = F.one_hot(y, 10).float() * keep[:, None]
    x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1
    want = F.mse_loss(net(x_t, t, c), x1 - x0)
    assert torch.allclose(got, want, atol=1e-6)


def _course_sampler(net, c, n_steps: int, guidance: float, generator) -> torch.Tensor:
    """The course's sampler, transcribed: x ~ N(0, I); for i in 0..T-1: t = i / T, x += u / T (CFG on u)."""
    x = torch.randn((c.shape[0], 1, 28, 28), generator=generator)
    with torch.no_grad():
        for i in range(n_steps):
            t = torch.full((c.shape[0],), i / n_steps)
            u_c, u_u = net(x, t, c), net(x, t, torch.zeros_like(c))
            x = x + (u_u + guidance * (u_c - u_u)) / n_steps
    return x


@pytest.mark.parametrize("T", [10, 30])
def test_fundiffs_euler_over_the_full_grid_is_the_courses_sampler(T):
    net = _net("class")
    den = UNetDenoiser(net, flow.schedule(T, endpoint=True), objective="course-flow")
    assert den.traits.default_sampler == "euler" and den.schedule.zero_terminal_snr
    c = den.encode(["1", "7", "3"])
    got = samplers.sample_from_noise(CFG(den, 5.0), c, ts.full(T), generator=torch.Generator().manual_seed(5))
    want = _course_sampler(net, c, T, 5.0, torch.Generator().manual_seed(5))
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_every_sampler_and_composer_runs_from_pure_noise():
    net = _net("class")
    den = UNetDenoiser(net, flow.schedule(20, endpoint=True), objective="course-flow")
    g = torch.Generator().manual_seed(0)
    for name in samplers.SAMPLERS:
        x = samplers.sample_from_noise(CFG(den, 3.0), den.encode(["1", "2"]), ts.full(20), generator=g, sampler=name)
        assert torch.isfinite(x).all(), name
    bands = FrequencyBands((GaussianFilter(9, 1.5),))
    composers = [
        Anagram.from_prompts(CFG(den, 3.0), ["identity", "vflip"], ["6", "9"]),
        Factorized.from_prompts(CFG(den, 3.0), ["0", "1"], bands),
    ]
    for comp in composers:
        x = samplers.sample_from_noise(comp, comp.encode(["", ""]), ts.full(20), generator=g, sampler="euler")
        assert torch.isfinite(x).all()


def test_x0_from_eps_at_pure_noise_is_a_one_line_error():
    s = flow.schedule(10, endpoint=True)
    with pytest.raises(FundiffError, match="pure noise"):
        s.x0_from_eps(torch.zeros(1, 1, 4, 4), 9, torch.zeros(1, 1, 4, 4))
    assert torch.isfinite(s.x0_from_eps(torch.zeros(1, 1, 4, 4), 8, torch.zeros(1, 1, 4, 4))).all()
    assert not flow.schedule(10).zero_terminal_snr


def test_a_course_flow_run_trains_saves_and_loads_on_its_grid(tmp_path):
    from fundiff.backends import runs
    from helpers import synthetic_data

    images, labels = synthetic_data(32)
    cfg = tiny_config("time", objective="course-flow", time_conditioning="multiplicative", epochs=1, T=12)
    training.train(cfg, tmp_path / "run", data=(images, labels), progress=False)
    den = runs.load_denoiser(str(tmp_path / "run"), precision="fp32")
    assert den.model.config.time_conditioning == "multiplicative" and den.schedule.zero_terminal_snr
    assert den.traits.objective == "course-flow" and den.traits.default_sampler == "euler"
    x = samplers.sample_from_noise(den, den.encode([""]), ts.full(12), generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 1, 28, 28) and torch.isfinite(x).all()


def test_a_course_model_samples_every_step_by_default(tmp_path, capsys):
    """No --steps / --stride: a course-flow model takes all T steps (traits.default_steps), so a command without
    flags runs the course's sampler (Euler steps of 1/T: the test above); other models keep the write-up's stride."""
    from fundiff import cli
    from fundiff.backends import runs
    from helpers import synthetic_data

    images, labels = synthetic_data(32)
    cfg = tiny_config("class", objective="course-flow", flow_times="uniform", epochs=1, T=12)
    training.train(cfg, tmp_path / "run", data=(images, labels), progress=False)
    den = runs.load_denoiser(str(tmp_path / "run"), precision="fp32")
    assert den.traits.default_steps == 12 and ts.for_model(den) == ts.full(12)
    assert ts.for_model(den, steps=3) == ts.strided(12, steps=3)
    assert ts.for_model(UNetDenoiser(_net("class"), flow.schedule(300))) == ts.default(300)  # 35 steps
    assert ts.for_model(UNetDenoiser(_net("class"), flow.schedule(300), objective="flow")) == ts.default(300)
    assert cli.main(["sample", "--model", str(tmp_path / "run"), "--n", "1", "--out", str(tmp_path / "s")]) == 0
    assert "(12 steps)" in capsys.readouterr().out
    from fundiff.figures import resolve_timesteps

    assert resolve_timesteps(den, None) == ts.full(12)  # the Python API's figures too
