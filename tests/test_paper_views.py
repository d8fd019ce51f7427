"""The Visual Anagrams paper's views (Geng et al. 2024): skew, pixel, patch:N (a jigsaw), inner-circle.

Each is an exact pixel permutation with its inverse, so view o inverse = identity and i.i.d. N(0, I) noise stays
i.i.d. N(0, I) under the view (the paper's condition for a valid view); they are registered like the others and
reach the CLI's --view."""

import pytest
import torch

from fundiff import cli, views
from fundiff.errors import FundiffError

NEW = ["skew", "pixel", "inner-circle", "patch:2", "patch:4", "patch:7"]
ALL = views.view_names() + ["rot90:1", "translate:3,-2"] + [v for v in NEW if ":" in v]


@pytest.mark.parametrize("spec", ALL)
def test_view_then_inverse_is_the_identity(spec):
    v = views.get_view(spec)
    for shape in [(1, 1, 28, 28), (2, 3, 28, 28)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        assert torch.equal(v.inverse_view(v.view(x)), x) and torch.equal(v.view(v.inverse_view(x)), x)


@pytest.mark.parametrize("spec", ALL)
def test_every_view_is_a_signed_pixel_permutation_so_iid_noise_stays_iid(spec):
    """V(x) = sign * P(x) with P a permutation of the H x W positions (the same for every channel and image):
    then V(eps) of eps ~ N(0, I) i.i.d. is again N(0, I) i.i.d., exactly."""
    v = views.get_view(spec)
    positions = torch.arange(28 * 28, dtype=torch.float64).reshape(1, 1, 28, 28) + 1
    moved = v.view(positions.expand(2, 3, 28, 28))
    sign = v.sign
    assert torch.equal(moved[0, 0], moved[1, 2])  # one permutation for every image and channel
    assert torch.equal((sign * moved[0, 0]).flatten().sort().values, positions.flatten())  # a bijection
    eps = torch.randn(20000, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    viewed = v.view(eps)
    assert abs(float(viewed.mean())) < 0.01 and abs(float(viewed.std()) - 1) < 0.01
    a, b = viewed[:, 0, 10, 10], viewed[:, 0, 10, 11]  # two neighbouring outputs stay uncorrelated
    assert abs(float((a * b).mean())) < 0.03


@pytest.mark.parametrize("spec", NEW)
def test_the_papers_views_move_pixels_and_are_registered(spec):
    v = views.get_view(spec)
    x = torch.arange(28 * 28.0).reshape(1, 1, 28, 28)
    moved = float((v.view(x) != x).float().mean())
    assert moved > 0.15, moved  # inner-circle moves the disc only (about a fifth of the pixels)
    assert spec.split(":")[0] in " ".join(views.view_specs())


def test_inner_circle_turns_the_disc_and_keeps_the_rest():
    v, x = views.get_view("inner-circle"), torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    y = v.view(x)
    rows, cols = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    inside = (rows - 13.5) ** 2 + (cols - 13.5) ** 2 < 7**2
    assert torch.equal(y[0, 0][~inside], x[0, 0][~inside])
    assert torch.equal(y[0, 0][inside], torch.rot90(x[0, 0], 1)[inside])  # a quarter turn counterclockwise


def test_bad_paper_view_arguments_are_one_line_errors():
    for spec, match in [("patch:3", "divide by 3"), ("patch:1", "N >= 2"), ("patch:x", "pieces per side")]:
        with pytest.raises(FundiffError, match=match) as e:
            views.get_view(spec).view(torch.zeros(1, 1, 28, 28))
        assert "\n" not in str(e.value)
    with pytest.raises(FundiffError, match="square images"):
        views.get_view("inner-circle").view(torch.zeros(1, 1, 28, 32))


def test_an_anagram_with_a_jigsaw_runs_through_the_cli(tmp_path):
    from fundiff import training
    from helpers import synthetic_data, tiny_config

    run = tmp_path / "run"
    training.train(tiny_config("class", epochs=1), run, data=synthetic_data(16), device="cpu", progress=False)
    argv = ["anagram", "--model", str(run), "--view", "patch:4", "--n", "1", "--steps", "3", "--out", str(tmp_path)]
    assert cli.main([*argv, "--precision", "fp32"]) == 0
    assert (tmp_path / "anagram" / "patch-4-9_sample-1.png").is_file()
