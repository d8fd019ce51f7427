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


def test_patches_are_space_to_depth_around_the_same_unet():
    cfg = UNetConfig(kind="class", in_channels=3, hidden=8, num_classes=5, image_size=32, patch=2)
    torch.manual_seed(0)
    m = UNet(cfg).eval()
    assert m.e1[0][0].in_channels == 12 and m.flatten[0].kernel_size == 4  # 2x2 patches of 3 channels; 4x4 grid
    inner = UNet(UNetConfig(kind="class", in_channels=12, hidden=8, num_classes=5, image_size=16)).eval()
    inner.load_state_dict(m.state_dict())  # the same tensors: a UNet on 16x16 images of 12 channels
    x, t, c = torch.randn(2, 3, 32, 32), torch.tensor([0.1, 0.9]), torch.eye(5)[:2]
    want = torch.nn.functional.pixel_shuffle(inner(torch.nn.functional.pixel_unshuffle(x, 2), t, c), 2)
    assert m(x, t, c).shape == x.shape and torch.allclose(m(x, t, c), want)
    with pytest.raises(FundiffError, match="divisible by 4 x patch"):
        UNetConfig(image_size=28, patch=2)


def test_film_and_the_class_map_start_as_the_write_ups_conditioning():
    """FiLM is zero-initialised: with it added, the UNet computes what the write-up's does until training moves it.
    The class map reaches the output: its weights change it."""
    base = UNetConfig(kind="class", in_channels=3, hidden=8, num_classes=6, image_size=16)
    torch.manual_seed(0)
    plain = UNet(base).eval()
    torch.manual_seed(0)
    film = UNet(UNetConfig(**{**base.to_dict(), "film": True})).eval()
    film.load_state_dict(plain.state_dict(), strict=False)
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 0.7]), torch.eye(6)[:2]
    assert torch.allclose(film(x, t, c), plain(x, t, c), atol=1e-6)
    torch.manual_seed(0)
    mapped = UNet(UNetConfig(**{**base.to_dict(), "class_map": 4})).eval()
    assert mapped.map_c.out_features == 4 * 4 * 4  # K = 4 maps of the 4x4 bottleneck of a 16x16 image
    before = mapped(x, t, c)
    with torch.no_grad():
        mapped.map_c.weight[:, 0] += 1.0  # word 0's maps
    after = mapped(x, t, c)
    assert not torch.allclose(after[0], before[0]) and torch.allclose(after[1], before[1])  # only where c says it
    with pytest.raises(FundiffError, match="class map needs a class model"):
        UNetConfig(kind="time", class_map=4)
    with pytest.raises(FundiffError, match="one-step denoiser has neither"):
        UNetConfig(kind="denoiser", film=True)
