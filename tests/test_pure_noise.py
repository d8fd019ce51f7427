"""`fundiff train denoiser --pure-noise` (the course's Part 1.2.3): the one-step denoiser trained on inputs that
are noise only. Under an MSE loss the best prediction that cannot see the image is a constant, the training
set's mean image, and that is what it learns."""

import pytest
import torch

from fundiff import cli, training
from fundiff.backends import runs
from fundiff.errors import FundiffError
from helpers import synthetic_data, tiny_config


def _on_noise(tmp_path, pure_noise: bool) -> tuple[float, float, float]:
    """(MSE to the training set's mean image, MSE to the nearest training image, spread over inputs) of the
    tiny denoiser's output on fresh pure noise, trained 20 steps with or without --pure-noise."""
    torch.set_num_threads(1)
    x, y = synthetic_data(64)
    cfg = tiny_config("denoiser", pure_noise=pure_noise, epochs=5, lr=1e-2, batch_size=16, hidden=8, save_every=0)
    training.train(cfg, tmp_path / "run", data=(x, y), progress=False)
    net, config = runs.load(tmp_path / "run")
    assert config["train"]["pure_noise"] is pure_noise
    z = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = net(z)
    images = x.float().div(255).unsqueeze(1)
    to_mean = float(((out - images.mean(0, keepdim=True)) ** 2).mean())
    to_nearest = float(((out[:, None] - images[None]) ** 2).mean(dim=(2, 3, 4)).min())
    return to_mean, to_nearest, float(out.std(0).mean())


def test_a_pure_noise_denoiser_predicts_the_training_sets_mean_image(tmp_path):
    to_mean, to_nearest, spread = _on_noise(tmp_path, pure_noise=True)
    assert to_mean < 0.3 * to_nearest, (to_mean, to_nearest)  # the mean, not a memorised image
    assert spread < 0.02, spread  # and (nearly) the same whatever the noise


def test_the_same_recipe_on_noisy_images_does_not_learn_the_mean(tmp_path):
    """The check above fails for a denoiser trained on z = x + sigma eps (it learned to follow its input)."""
    to_mean, to_nearest, spread = _on_noise(tmp_path, pure_noise=False)
    assert to_mean > 0.3 * to_nearest or spread > 0.02, (to_mean, to_nearest, spread)


def test_pure_noise_is_for_the_denoiser_only(tmp_path, capsys):
    with pytest.raises(FundiffError, match="--pure-noise trains the one-step denoiser"):
        tiny_config("time", pure_noise=True)
    argv = ["train", "class", "--pure-noise", "--max-steps", "1", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    assert "--pure-noise trains the one-step denoiser" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
