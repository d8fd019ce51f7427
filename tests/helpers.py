"""Small fixtures shared by tests: synthetic digit-like data, tiny configs and a tiny random UNet."""

from collections.abc import Sequence

import torch
from torch import nn

from fundiff import training
from fundiff.denoisers import Prediction, UNetDenoiser
from fundiff.models.unet import UNet, UNetConfig
from fundiff.schedules import NoiseSchedule
from fundiff.training import TrainConfig
from fundiff.traits import ModelTraits


def synthetic_data(n: int = 48, seed: int = 0, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, size, size) uint8 images (a bright square whose position is the label) and int64 labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, size, size), generator=g, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        r, c = 2 + 2 * (k // 5), 2 + 4 * (k % 5)
        images[i, r : r + 8, c : c + 6] = 255
    return images, labels


def tiny_config(kind: str = "class", **kw) -> TrainConfig:
    base = dict(
        hidden=4,
        batch_size=16,
        epochs=3,
        lr=1e-3,
        lr_schedule="exponential",
        T=20,
        save_every=2,
        precision="fp32",
        preset="tiny",
    )
    base.update(kw)
    return TrainConfig(kind=kind, **base)


def tiny_runs(root, data) -> dict:
    """A tiny (T=20, one epoch) class, time and denoiser run folder under ``root``, by kind."""
    out = {}
    for kind in ("class", "time", "denoiser"):
        training.train(tiny_config(kind, epochs=1, T=20), root / kind, data=data, progress=False)
        out[kind] = root / kind
    return out


def tiny_unet(T: int = 20, *, kind: str = "class", class_names: Sequence[str] = (), seed: int = 0) -> UNetDenoiser:
    """An untrained class (or time) UNet with hidden = 4 on 28x28 images, as a Denoiser over a linear T-step schedule.

    Its weights depend on ``seed`` only: they are drawn inside ``torch.random.fork_rng``, so the global RNG
    is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(UNetConfig(kind=kind, hidden=4)).eval()
    return UNetDenoiser(net, NoiseSchedule.linear(T), class_names=class_names)


class PixelClassifier(nn.Module):
    """Predicts class round(10 * x[0,0,0]): the test decides every prediction through the image."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long().clamp(0, 9), 10).float()

    def features(self, x):
        return x.flatten(1)[:, :8]


class FlatPrior:
    """The exact (MMSE) denoiser for flat images x_0 = c (every pixel the same), c ~ N(mu, s^2): E[x_0 | x_t]
    depends on x_t only through its mean. Known pixels then determine the missing ones: a good inpainting
    fills the mask with the known value."""

    channels, image_size, value_range = 1, 8, (0.0, 1.0)
    traits = ModelTraits()  # no preferences: ddpm, eps

    def __init__(self, schedule, mu=0.5, s=0.2):
        self.schedule, self.mu, self.s = schedule, mu, s

    def encode(self, prompts):
        return torch.zeros(len(prompts), 0)

    def __call__(self, x_t, t, cond):
        abar = self.schedule.abar_at(t).to(x_t.dtype).reshape(-1, 1, 1, 1)
        n = x_t[0].numel()
        x_mean = x_t.mean(dim=(1, 2, 3), keepdim=True)
        c = self.mu + abar.sqrt() * self.s**2 / (abar * self.s**2 + (1 - abar) / n) * (x_mean - abar.sqrt() * self.mu)
        return Prediction((x_t - abar.sqrt() * c) / (1 - abar).sqrt())


def rejected(capsys, argv, match) -> None:
    """`fundiff ARGV` fails with exit status 2 and a one-line message holding ``match`` (parser or FundiffError)."""
    from fundiff import cli

    try:
        rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "error:" in err and match in err, (argv, err)
