import pytest
import torch

from fundiff.errors import FundiffError
from fundiff.models.unet import UNet, UNetConfig


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_pin_the_write_up_architecture():
    # pinned: denoiser D=128 (unconditional), time and class D=64
    assert _params(UNet(UNetConfig(kind="denoiser", hidden=128))) == 7_891_073
    assert _params(UNet(UNetConfig(kind="class", hidden=64))) == 2_019_201
    time = UNet(UNetConfig(kind="time", hidden=64))
    # time = class minus the two class FCBlocks (10->128->128, 10->64->64)
    assert _params(time) == 2_019_201 - (10 * 128 + 128 + 128 * 128 + 128) - (10 * 64 + 64 + 64 * 64 + 64)


@pytest.mark.parametrize("kind", ["denoiser", "time", "class"])
def test_shapes_and_conditioning(kind):
    torch.manual_seed(0)
    m = UNet(UNetConfig(kind=kind, hidden=8)).eval()
    x = torch.randn(3, 1, 28, 28)
    t = torch.tensor([0.0, 0.5, 1.0])
    c = torch.eye(10)[:3]
    out = m(x, t, c)
    assert out.shape == x.shape
    if kind != "denoiser":
        assert not torch.allclose(m(x, t.flip(0), c), out)  # t matters
    if kind == "class":
        assert not torch.allclose(m(x, t, torch.zeros(3, 10)), out)  # c matters; zeros = no class


def test_missing_conditioning_is_a_clear_error():
    with pytest.raises(FundiffError, match="needs the timestep"):
        UNet(UNetConfig(kind="time", hidden=4))(torch.randn(1, 1, 28, 28))
    with pytest.raises(FundiffError, match="class vector"):
        UNet(UNetConfig(kind="class", hidden=4))(torch.randn(1, 1, 28, 28), torch.zeros(1))
    with pytest.raises(FundiffError, match="unknown model kind"):
        UNetConfig(kind="vae")
    with pytest.raises(FundiffError, match="divisible by 4"):
        UNetConfig(image_size=30)
