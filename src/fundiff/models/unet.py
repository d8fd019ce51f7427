"""The write-up's UNet (Part B), built from its named operations.

Shapes for a 28x28 input and hidden size D (``in`` channels C, 1 for MNIST)::

    x (C,28,28) -ConvBlock-> e1 (D,28,28) -DownBlock-> e2 (D,14,14) -DownBlock-> e3 (2D,7,7)
    -Flatten-> (2D,1,1) -Unflatten-> u0 (2D,7,7)         [time: u0 + t1 (or u0 * t1); class: c1*u0 + t1]
    cat(u0, e3) -UpBlock-> u1 (D,14,14)                   [time: u1 + t2 (or u1 * t2); class: c2*u1 + t2]
    cat(u1, e2) -UpBlock-> u2 (D,28,28)
    cat(u2, e1) -ConvBlock-> (D,28,28) -Conv3x3-> out (C,28,28)

Beyond the write-up, three options (off by default; fundiff's emoji model takes the first two, README "Text
to image on a CPU"):

- ``class_map`` K: a Linear from c to K maps of the bottleneck's side, added at u0 through a 1x1 conv and,
  upsampled, at u1: each word or name of a text model draws its own coarse layout, which the write-up's
  channel scales (c1 * u0) cannot;
- ``film``: FiLM (Perez et al. 2018, as in ADM) of every conv block's output by an embedding of (t, c);
- ``patch`` p > 1: the UNet on p x p pixel patches (space-to-depth, as in Hoogeboom et al. 2023's "simple
  diffusion" and the patches of DiT): ``pixel_unshuffle`` turns (C,H,W) into (C p^2, H/p, W/p) before e1 and
  ``pixel_shuffle`` turns the output back, so a p^2 times smaller grid buys a wider D (on the emoji, p = 2 with
  D = 128 did worse than p = 1, D = 64 at equal steps).

The unconditional variant is the one-step denoiser (it predicts the clean image); the
time- and class-conditioned variants predict what their training objective asks: the noise eps (Ho et al.
2020, the write-up), v, or a flow-matching velocity (fundiff.training; UNetDenoiser serves each as eps).
The time model conditions additively (the write-up) or, as the course's flow-matching edition does,
multiplicatively (``time_conditioning="multiplicative"``: ``unflatten * t1``, ``up1 * t2``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from fundiff.errors import FundiffError

ModelKind = Literal["denoiser", "time", "class"]
MODEL_KINDS: tuple[str, ...] = ("denoiser", "time", "class")
TIME_CONDITIONINGS: tuple[str, ...] = ("additive", "multiplicative")  # how the time model takes t1, t2


class Conv(nn.Sequential):
    """Conv: 3x3 conv, stride 1 (keeps H, W) -> BatchNorm -> GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.GELU())


class DownConv(nn.Sequential):
    """DownConv: 3x3 conv, stride 2 (halves H, W) -> BatchNorm -> GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.GELU())


class UpConv(nn.Sequential):
    """UpConv: 4x4 transposed conv, stride 2 (doubles H, W) -> BatchNorm -> GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.GELU())


class Flatten(nn.Sequential):
    """Flatten: 7x7 average pool -> GELU, (2D,7,7) -> (2D,1,1)."""

    def __init__(self, size: int = 7) -> None:
        super().__init__(nn.AvgPool2d(size), nn.GELU())


class Unflatten(nn.Sequential):
    """Unflatten: 7x7 transposed conv, stride 7 -> BatchNorm -> GELU, (2D,1,1) -> (2D,7,7)."""

    def __init__(self, c: int, size: int = 7) -> None:
        super().__init__(nn.ConvTranspose2d(c, c, size, size, 0), nn.BatchNorm2d(c), nn.GELU())


class ConvBlock(nn.Sequential):
    """ConvBlock: Conv(c_in -> c_out) -> Conv(c_out -> c_out)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(Conv(c_in, c_out), Conv(c_out, c_out))


class DownBlock(nn.Sequential):
    """DownBlock: DownConv -> ConvBlock."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(DownConv(c_in, c_out), ConvBlock(c_out, c_out))


class UpBlock(nn.Sequential):
    """UpBlock: UpConv -> ConvBlock."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(UpConv(c_in, c_out), ConvBlock(c_out, c_out))


class FiLM(nn.Module):
    """FiLM (Perez et al. 2018), as every block of an ADM UNet takes its embedding (Dhariwal & Nichol 2021):
    h -> h * (1 + scale) + shift, (scale, shift) = Linear(emb); zero-initialised, so it starts as the identity."""

    def __init__(self, emb_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(emb_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.proj(emb)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + scale) + shift


class FCBlock(nn.Sequential):
    """FCBlock: Linear -> GELU -> Linear, (B, f_in) -> (B, f_out, 1, 1) for broadcasting."""

    def __init__(self, f_in: int, f_out: int) -> None:
        super().__init__(nn.Linear(f_in, f_out), nn.GELU(), nn.Linear(f_out, f_out), nn.Unflatten(1, (f_out, 1, 1)))


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the write-up's UNet; saved beside every checkpoint as JSON."""

    kind: str = "class"  # "denoiser" (predicts x0), "time" or "class" (predict eps, v or a velocity)
    in_channels: int = 1  # image channels C (1 for MNIST / Fashion-MNIST)
    hidden: int = 64  # D in the write-up: 128 for the denoiser, 64 for time / class
    num_classes: int = 10  # length of the one-hot class vector c (class kind only)
    image_size: int = 28  # H = W; must be divisible by 4 * patch (two DownConvs, Flatten pools 7x7)
    time_conditioning: str = "additive"  # time kind: u0 + t1, u1 + t2 (write-up), or "multiplicative" (course)
    patch: int = 1  # side of the pixel patches the UNet runs on (1: pixels, the write-up; 2: space-to-depth)
    film: bool = False  # time / class kinds: also FiLM every block's output by an embedding of (t, c)
    class_map: int = 0  # class kind: channels K of a learned spatial map of c added at u0 and u1 (0: none)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise FundiffError(f"unknown model kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
        if self.time_conditioning not in TIME_CONDITIONINGS:
            raise FundiffError(
                f"unknown time conditioning {self.time_conditioning!r}; choose one of {', '.join(TIME_CONDITIONINGS)}"
            )
        if self.class_map < 0 or (self.class_map and self.kind != "class"):
            raise FundiffError("a class map needs a class model and K >= 1 channels; drop --class-map otherwise")
        if self.film and self.kind == "denoiser":
            raise FundiffError("FiLM conditions on t (and c): the one-step denoiser has neither; drop --film")
        if self.time_conditioning != "additive" and self.kind != "time":
            raise FundiffError("multiplicative time conditioning is the time model's; drop it for other kinds")
        if self.hidden < 1 or self.in_channels < 1 or self.num_classes < 1 or self.patch < 1:
            raise FundiffError("hidden, in_channels, num_classes and patch must be positive")
        if self.image_size % (4 * self.patch):
            raise FundiffError(
                f"image_size must be divisible by 4 x patch ({4 * self.patch}), got {self.image_size}; "
                "choose another --patch"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class UNet(nn.Module):
    """The write-up's UNet: unconditional, time-conditioned or class-conditioned.

    forward(x, t=None, c=None): x (B,C,H,W) float; t (B,) float normalised to [0, 1]
    (time / class kinds); c (B, num_classes) float one-hot, all zeros for "no class"
    (class kind). Returns (B,C,H,W).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        C, D = config.in_channels * config.patch**2, config.hidden  # channels of the patches
        grid = config.image_size // (4 * config.patch)  # side at the bottleneck
        self.e1 = ConvBlock(C, D)
        self.e2 = DownBlock(D, D)
        self.e3 = DownBlock(D, 2 * D)
        self.flatten = Flatten(grid)
        self.unflatten = Unflatten(2 * D, grid)
        self.u1 = UpBlock(4 * D, D)
        self.u2 = UpBlock(2 * D, D)
        self.out_block = ConvBlock(2 * D, D)
        self.out = nn.Conv2d(D, C, 3, 1, 1)
        if config.kind in ("time", "class"):
            self.fc1_t = FCBlock(1, 2 * D)
            self.fc2_t = FCBlock(1, D)
        if config.kind == "class":
            self.fc1_c = FCBlock(config.num_classes, 2 * D)
            self.fc2_c = FCBlock(config.num_classes, D)
        if config.class_map:  # c -> K maps of the bottleneck's side, a 1x1 conv into u0's and u1's channels
            self.map_c = nn.Linear(config.num_classes, config.class_map * grid * grid)
            self.map_u0 = nn.Conv2d(config.class_map, 2 * D, 1)
            self.map_u1 = nn.Conv2d(config.class_map, D, 1)
        if config.film:  # emb = GELU(FC(t) + Linear(c)), 2D wide; a FiLM after each of the six conv blocks
            self.emb_t = nn.Sequential(nn.Linear(1, 2 * D), nn.GELU(), nn.Linear(2 * D, 2 * D))
            self.emb_c = nn.Linear(config.num_classes, 2 * D) if config.kind == "class" else None
            self.film = nn.ModuleDict(
                {name: FiLM(2 * D, ch) for name, ch in FILM_BLOCKS(D).items()}  # keyed by the block they follow
            )

    def forward(self, x: Tensor, t: Tensor | None = None, c: Tensor | None = None) -> Tensor:
        kind = self.config.kind
        if kind != "denoiser" and t is None:
            raise FundiffError(f"a {kind}-conditioned UNet needs the timestep t")
        if kind == "class" and c is None:
            raise FundiffError("a class-conditioned UNet needs the class vector c (zeros for none)")
        multiplicative = self.config.time_conditioning == "multiplicative"
        p = self.config.patch
        film = self._film(t, c, x.dtype) if self.config.film else lambda _name, h: h
        e1 = film("e1", self.e1(nn.functional.pixel_unshuffle(x, p) if p > 1 else x))
        e2 = film("e2", self.e2(e1))
        e3 = film("e3", self.e3(e2))
        u0 = self.unflatten(self.flatten(e3))
        if kind != "denoiser":
            t = t.reshape(-1, 1).to(x.dtype)
            t1, t2 = self.fc1_t(t), self.fc2_t(t)
            if kind == "class":
                c = c.to(x.dtype)
                u0 = self.fc1_c(c) * u0 + t1
                if self.config.class_map:
                    cmap = self.map_c(c).reshape(-1, self.config.class_map, *u0.shape[-2:])
                    u0 = u0 + self.map_u0(cmap)
            else:
                u0 = u0 * t1 if multiplicative else u0 + t1
        u1 = film("u1", self.u1(torch.cat([u0, e3], dim=1)))
        if kind == "class":
            u1 = self.fc2_c(c) * u1 + t2
            if self.config.class_map:
                u1 = u1 + self.map_u1(nn.functional.interpolate(cmap, scale_factor=2, mode="nearest"))
        elif kind == "time":
            u1 = u1 * t2 if multiplicative else u1 + t2
        u2 = film("u2", self.u2(torch.cat([u1, e2], dim=1)))
        out = self.out(film("out_block", self.out_block(torch.cat([u2, e1], dim=1))))
        return nn.functional.pixel_shuffle(out, p) if p > 1 else out

    def _film(self, t: Tensor, c: Tensor | None, dtype: torch.dtype):
        """film(name, h): block ``name``'s output h modulated by the embedding of (t, c)."""
        emb = self.emb_t(t.reshape(-1, 1).to(dtype))
        if self.emb_c is not None:
            emb = emb + self.emb_c(c.to(dtype))
        emb = nn.functional.gelu(emb)
        return lambda name, h: self.film[name](h, emb)


def FILM_BLOCKS(D: int) -> dict[str, int]:  # noqa: N802 (a table, by the write-up's block names)
    """The blocks a FiLM follows, with their output channels at hidden size ``D``."""
    return {"e1": D, "e2": D, "e3": 2 * D, "u1": D, "u2": D, "out_block": D}


def example_inputs(config: UNetConfig, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Positional inputs of a UNet's forward for a batch of ``n``, for timing: x in [0, 1] (n,C,H,W),
    t in [0, 1] (n,) for time/class kinds, a one-hot c (n, num_classes) for the class kind. Fixed seed."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, config.in_channels, config.image_size, config.image_size, generator=g)
    t = torch.rand(n, generator=g)
    c = torch.nn.functional.one_hot(torch.randint(0, config.num_classes, (n,), generator=g), config.num_classes)
    inputs = {"denoiser": (x,), "time": (x, t), "class": (x, t, c.float())}[config.kind]
    return tuple(v.to(device) for v in inputs)
