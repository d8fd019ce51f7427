import pytest
import torch

from fundiff import views
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.views import GaussianFilter, View, get_view, register_view, view_names


def _x(shape=(2, 3, 5, 7), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_builtin_views_are_registered():
    assert {"identity", "vflip", "hflip", "rot180", "negate"} <= set(view_names())


@pytest.mark.parametrize("name", ["identity", "vflip", "hflip", "rot180", "negate"])
def test_inverse_undoes_view_and_nothing_is_mutated(name):
    v = get_view(name)
    x = _x()
    before = x.clone()
    assert torch.equal(v.inverse_view(v.view(x)), x)
    assert torch.equal(v.view(v.inverse_view(x)), x)
    assert torch.equal(v.inverse_view_variance(v.permute(x)), x)
    vr, alpha = (0.0, 1.0), torch.tensor(0.3).sqrt()
    # view_x_t of the inverse-viewed noisy image: V^-1 lifted the same way undoes it
    lifted = v.view_x_t(x, alpha, vr)
    back = v.inverse_view(lifted - 0.5 * alpha) + 0.5 * alpha
    torch.testing.assert_close(back, x)
    assert torch.equal(x, before)


def test_vflip_is_upside_down_and_differs_from_rot180():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert torch.equal(get_view("vflip").view(x)[0, 0, 0], x[0, 0, 2])  # first row is the old last row
    assert torch.equal(get_view("hflip").view(x)[0, 0, :, 0], x[0, 0, :, 3])
    assert torch.equal(get_view("rot180").view(x), torch.rot90(x, 2, dims=(-2, -1)))
    assert not torch.equal(get_view("vflip").view(x), get_view("rot180").view(x))


def test_negate_of_noisy_image_is_noisy_negated_image_for_0_1_data():
    """For x_0 in [0, 1]: view_x_t(q(x_0, t, eps)) == q(1 - x_0, t, -eps), the derivation in views.py."""
    s = NoiseSchedule.linear(50)
    x0 = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    eps = _x((3, 1, 6, 6), seed=2)
    t = torch.tensor([0, 20, 49])
    alpha = s.at(t, like=x0).alpha  # sqrt(abar_t), (3, 1, 1, 1)
    neg = get_view("negate")
    torch.testing.assert_close(neg.view_x_t(s.q_sample(x0, t, eps), alpha, (0.0, 1.0)), s.q_sample(1 - x0, t, -eps))
    torch.testing.assert_close(neg.view_image(x0, (0.0, 1.0)), 1 - x0)
    x_t = s.q_sample(x0, t, eps)
    assert torch.equal(neg.view_x_t(x_t, alpha, (-1.0, 1.0)), -x_t)  # DeepFloyd's [-1, 1]: plain negation
    assert torch.equal(get_view("vflip").view_x_t(x_t, alpha, (0.0, 1.0)), x_t.flip(-2))  # permutations need no offset


def test_negate_keeps_variance_sign():
    v = _x()
    assert torch.equal(get_view("negate").inverse_view_variance(v), v)
    assert torch.equal(get_view("negate").inverse_view(v), -v)


def test_unknown_view_is_a_one_line_error_listing_names():
    with pytest.raises(FundiffError) as e:
        get_view("upside-down")
    msg = str(e.value)
    assert "\n" not in msg and "vflip" in msg and "rot180" in msg and "negate" in msg


def test_register_a_new_view(monkeypatch):
    monkeypatch.setattr(views, "_REGISTRY", dict(views._REGISTRY))  # keep the test's view out of other tests
    monkeypatch.setattr(views, "_FAMILIES", dict(views._FAMILIES))
    t = _transpose
    register_view(View("transpose", t, t, description="swap rows and columns"))
    assert "transpose" in view_names()
    x = _x((1, 1, 4, 4))
    assert torch.equal(get_view("transpose").view(x), x.transpose(-2, -1))
    with pytest.raises(FundiffError, match="already registered"):
        register_view(View("transpose", t, t))
    with pytest.raises(FundiffError, match="sign"):
        View("bad", t, t, sign=2.0)
    with pytest.raises(FundiffError, match="already registered"):
        register_view(View("rot90", t, t))  # a family's name is taken too
    views.register_view_family(views.ViewFamily("shift", views._translate_view, "shift:DX,DY"))
    assert get_view("shift:1,0").name == "translate:1,0" and "shift:DX,DY" in views.view_specs()


def test_lowpass_plus_highpass_is_the_input():
    x = _x((2, 1, 28, 28))
    before = x.clone()
    f = GaussianFilter(kernel_size=9, sigma=2.0)
    torch.testing.assert_close(f.lowpass(x) + f.highpass(x), x, rtol=0, atol=1e-6)
    assert torch.equal(x, before)


def test_lowpass_keeps_constants_and_removes_a_checkerboard():
    f = GaussianFilter(kernel_size=7, sigma=1.5)
    const = torch.full((1, 1, 12, 12), 0.3)
    torch.testing.assert_close(f.lowpass(const), const)
    board = (torch.arange(12)[:, None] + torch.arange(12)[None, :]).remainder(2).float().reshape(1, 1, 12, 12)
    assert f.lowpass(board).std() < 0.05 * board.std()
    assert torch.equal(GaussianFilter(kernel_size=1, sigma=1.0).lowpass(board), board)


@pytest.mark.parametrize(
    "kw, match", [(dict(kernel_size=4), "odd"), (dict(kernel_size=0), "odd"), (dict(sigma=0.0), "sigma")]
)
def test_bad_filter_options(kw, match):
    with pytest.raises(FundiffError, match=match):
        GaussianFilter(**kw)


def test_kernel_larger_than_image_is_an_error():
    with pytest.raises(FundiffError, match="too large"):
        GaussianFilter(kernel_size=17, sigma=2.0).lowpass(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize(
    "spec", ["rot90:0", "rot90:1", "rot90:2", "rot90:3", "rot90:-1", "translate:3,-2", "translate:0,5"]
)
def test_parametric_views_are_invertible_and_pure(spec):
    v = get_view(spec)
    x = _x((2, 3, 6, 6))
    before = x.clone()
    assert torch.equal(v.inverse_view(v.view(x)), x) and torch.equal(v.view(v.inverse_view(x)), x)
    assert torch.equal(v.inverse_view_variance(v.permute(x)), x)
    assert torch.equal(x, before)
    assert sorted(v.view(x).flatten().tolist()) == sorted(x.flatten().tolist())  # a pixel permutation


def test_parametric_views_do_what_they_say():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(get_view("rot90:1").view(x), torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.equal(get_view("rot90:2").view(x), get_view("rot180").view(x))
    assert get_view("rot90:5").name == "rot90:1" and get_view("rot90:-1").name == "rot90:3"
    shifted = get_view("translate:1,2").view(x)
    assert shifted[0, 0, 2, 1] == x[0, 0, 0, 0]  # the top-left pixel moved 1 column right, 2 rows down
    assert shifted[0, 0, 0, 0] == x[0, 0, 2, 3]  # wrapping around


def test_bad_parametric_views_are_one_line_errors():
    for spec, match in [
        ("rot90:x", "quarter turns"),
        ("rot90:", "quarter turns"),
        ("translate:1", "two integers"),
        ("translate:1,2,3", "two integers"),
        ("shear:1", "rot90:K, translate:DX,DY"),
    ]:
        with pytest.raises(FundiffError, match=match) as e:
            get_view(spec)
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="square images"):
        get_view("rot90:1").view(_x((1, 1, 4, 6)))


def test_a_view_registered_after_the_parser_is_built_reaches_the_cli(monkeypatch, capsys):
    import argparse

    from fundiff.cli.techniques import register

    monkeypatch.setattr(views, "_REGISTRY", dict(views._REGISTRY))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["anagram", "--view", "transpose"])
    err = capsys.readouterr().err
    assert "unknown view 'transpose'" in err and "vflip" in err and "rot90:K" in err
    register_view(View("transpose", _transpose, _transpose))
    assert parser.parse_args(["anagram", "--view", "transpose", "rot90:1"]).views == ["transpose", "rot90:1"]


def _transpose(x):
    return x.transpose(-2, -1)


@pytest.mark.parametrize(
    "k,sigma,shape,dtype",
    [
        (5, 1.0, (2, 1, 9, 9), torch.float32),
        (9, 1.5, (3, 3, 16, 12), torch.float32),
        (3, 0.7, (1, 8, 8), torch.float64),
        (7, 2.0, (4, 3, 8, 8), torch.bfloat16),
    ],
)
def test_gaussian_filter_is_torchvision_gaussian_blur_bit_for_bit(k, sigma, shape, dtype):
    from torchvision.transforms.functional import gaussian_blur

    x = torch.randn(shape, generator=torch.Generator().manual_seed(k)).to(dtype)
    assert torch.equal(GaussianFilter(k, sigma).lowpass(x), gaussian_blur(x, [k, k], [sigma, sigma]))
