"""The Denoiser protocol every sampler and edit runs on, and fundiff's UNets behind it.

A Denoiser maps a noisy batch ``x_t`` (B,C,H,W), integer timesteps ``t`` (B,) in
0..T-1 and a conditioning tensor ``cond`` (B, ...) to a :class:`Prediction`: the noise
estimate ``eps`` (B,C,H,W) and, for models that learn their variance (DeepFloyd IF),
the variance channels ``v`` (B,C,H,W) in [-1, 1] (``learned_range``). ``encode`` turns
prompts into conditioning; ``""`` is the null prompt of classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from fundiff.devices import autocast_for
from fundiff.errors import FundiffError
from fundiff.prompts import class_index
from fundiff.schedules import NoiseSchedule


@dataclass(frozen=True)
class Prediction:
    """A denoiser's output: noise estimate eps and, optionally, learned-variance channels v."""

    eps: Tensor  # (B,C,H,W)
    v: Tensor | None = None  # (B,C,H,W) in [-1, 1], or None for a fixed variance


@runtime_checkable
class Denoiser(Protocol):
    """x_t, t, cond -> Prediction. Also carries its schedule and image geometry."""

    schedule: NoiseSchedule
    channels: int
    image_size: int
    value_range: tuple[float, float]  # range of clean images x_0: (0, 1) for fundiff's UNets, (-1, 1) for DeepFloyd IF

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction: ...

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """Conditioning (len(prompts), ...) for each prompt; "" gives the null conditioning."""
        ...


class DenoiserWrapper:
    """Base of Denoisers that wrap another (guidance, composers): its schedule, geometry and prompts."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.schedule = denoiser.schedule
        self.channels = denoiser.channels
        self.image_size = denoiser.image_size
        self.value_range = denoiser.value_range

    def encode(self, prompts: Sequence[str]) -> Tensor:
        return self.denoiser.encode(prompts)


class UNetDenoiser:
    """fundiff's time- or class-conditioned UNet as a Denoiser.

    The UNet sees t normalised to [0, 1] as t / (T - 1) and, for the class kind, a one-hot
    class vector c (zeros = no class). ``class_names`` maps prompts to classes.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule,
        *,
        class_names: Sequence[str] = (),
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        kind = model.config.kind
        if kind not in ("time", "class"):
            raise FundiffError(f"a {kind!r} model is not a diffusion model; use a 'time' or 'class' model")
        self.model = model
        self.schedule = schedule
        self.kind = kind
        self.channels = model.config.in_channels
        self.image_size = model.config.image_size
        self.num_classes = model.config.num_classes if kind == "class" else 0
        self.class_names = tuple(class_names) or tuple(str(i) for i in range(self.num_classes))
        self.autocast_dtype = autocast_dtype
        self.value_range = (0.0, 1.0)  # the write-up trains on MNIST in [0, 1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def one_hot(self, classes: Sequence[int | None]) -> Tensor:
        """(B, num_classes) float one-hot vectors; None gives the all-zero null vector."""
        c = torch.zeros(len(classes), self.num_classes, device=self.device)
        for i, k in enumerate(classes):
            if k is not None:
                if not 0 <= int(k) < self.num_classes:
                    raise FundiffError(f"unknown class {k}; classes are 0..{self.num_classes - 1}")
                c[i, int(k)] = 1.0
        return c

    def encode(self, prompts: Sequence[str]) -> Tensor:
        if self.kind == "time":
            if any(p.strip() for p in prompts):
                raise FundiffError("this is a time-conditioned (unconditional) model; it takes no prompt or class")
            return torch.zeros(len(prompts), 0, device=self.device)
        return self.one_hot([class_index(p, self.class_names) for p in prompts])

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        t_norm = t.to(x_t.device, torch.float32) / (self.schedule.T - 1)
        with autocast_for(x_t.device, self.autocast_dtype):
            eps = self.model(x_t, t_norm, cond if self.kind == "class" else None)
        return Prediction(eps.float())
