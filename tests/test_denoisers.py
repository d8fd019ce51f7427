import copy

import pytest
import torch

from fundiff import devices
from fundiff.backends import runs
from fundiff.denoisers import UNetDenoiser
from helpers import synthetic_data, tiny_runs, tiny_unet


def _inputs(den, n=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    t = torch.randint(0, den.schedule.T, (n,), generator=g)
    return x, t, den.encode(["3", "", "7", "seven"][:n])


def test_channels_last_and_bf16_compute_the_same_prediction():
    den = tiny_unet()
    x, t, c = _inputs(den)
    ref = den(x, t, c).eps
    nhwc = UNetDenoiser(copy.deepcopy(den.model), den.schedule, channels_last=True)
    assert nhwc.traits.channels_last and not den.traits.channels_last
    got = nhwc(x, t, c).eps
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the model runs NHWC
    assert got.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    bf16 = UNetDenoiser(copy.deepcopy(den.model), den.schedule, autocast_dtype=torch.bfloat16, channels_last=True)
    assert bf16.traits.autocast_dtype == torch.bfloat16 and den.traits.autocast_dtype is None
    out = bf16(x, t, c).eps
    assert out.dtype == torch.float32
    err = (out - ref).abs().max()
    assert 0 < err < 0.05 * ref.abs().max()  # bf16 has ~3 significant digits: close, but not fp32's result


@pytest.mark.precision_timing
def test_auto_precision_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDIFF_CACHE", str(tmp_path / "cache"))
    run = tiny_runs(tmp_path, synthetic_data(32))["class"]
    calls = []
    real = devices._measure

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(devices, "_measure", counting)
    first = runs.load_denoiser(run, precision="auto")
    second = runs.load_denoiser(run, precision="auto")
    assert len(calls) == 1 and devices.precision_cache_path().is_file()
    assert first.traits == second.traits  # the same autocast dtype and memory format, read from the cache
    assert first.traits.autocast_dtype in (None, torch.bfloat16)
    forced = runs.load_denoiser(run, precision="fp32")
    assert forced.traits.autocast_dtype is None and forced.traits.channels_last is False and len(calls) == 1
    assert forced.traits.dataset == "mnist" and forced.traits.objective == "eps"  # from the run's config
