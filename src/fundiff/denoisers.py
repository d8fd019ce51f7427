"""The Denoiser protocol every sampler and edit runs on, and fundiff's UNets behind it.

A Denoiser maps a noisy batch ``x_t`` (B,C,H,W), integer timesteps ``t`` (B,) in
0..T-1 and a conditioning tensor ``cond`` (B, ...) to a :class:`Prediction`: the noise
estimate ``eps`` (B,C,H,W) and, for models that learn their variance (DeepFloyd IF),
the variance channels ``v`` (B,C,H,W) in [-1, 1] (``learned_range``). ``encode`` turns
prompts into conditioning; ``""`` is the null prompt of classifier-free guidance.

Besides the math, a Denoiser tells its users (the CLI, the figures) what it takes, so they
never look inside a particular backend: ``device``; ``conditional`` (``encode`` takes
non-null prompts, so guidance applies); ``default_prompts`` (what to show when the user gives
none: the class names of a class model, ``("",)`` for an unconditional one, a generic prompt
such as "a high quality photo" for a text model); ``describe_prompt`` (a short label for a
prompt, for grid rows and file names). Optionally ``default_sampler``: the name of the sampler
its users take when none is asked for (``heun`` for a flow-matching UNet); read it with
``getattr(den, "default_sampler", DEFAULT_SAMPLER)`` (samplers.default_sampler_of).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from fundiff import flow
from fundiff.devices import autocast_for
from fundiff.errors import FundiffError
from fundiff.prompts import class_index
from fundiff.schedules import NoiseSchedule

DEFAULT_SAMPLER = "ddpm"  # the sampler of a Denoiser that names none (samplers.DEFAULT_SAMPLER)
FLOW_DEFAULT_SAMPLER = "heun"  # the default sampler of a flow-matching UNet: its velocity ODE, 2nd order


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

    device: torch.device  # where it computes; inputs go there
    conditional: bool  # encode takes non-null prompts (classifier-free guidance applies)
    default_prompts: tuple[str, ...]  # prompts to show when the user gives none
    # optional: default_sampler: str, the sampler to use when none is asked for (absent: DEFAULT_SAMPLER)

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """Conditioning (len(prompts), ...) for each prompt; "" gives the null conditioning."""
        ...

    def describe_prompt(self, prompt: str) -> str:
        """A short label for ``prompt`` (e.g. its class name); "" for the null prompt. Bad prompts raise."""
        ...


class DenoiserWrapper:
    """Base of Denoisers that wrap another (guidance, composers): its schedule, geometry and prompts.

    ``device``, ``conditional``, ``default_prompts``, ``default_sampler`` and ``describe_prompt`` are
    the wrapped denoiser's, read when asked; a subclass may override them.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.schedule = denoiser.schedule
        self.channels = denoiser.channels
        self.image_size = denoiser.image_size
        self.value_range = denoiser.value_range

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def conditional(self) -> bool:
        return self.denoiser.conditional

    @property
    def default_prompts(self) -> tuple[str, ...]:
        return self.denoiser.default_prompts

    @property
    def default_sampler(self) -> str:
        return getattr(self.denoiser, "default_sampler", DEFAULT_SAMPLER)

    def encode(self, prompts: Sequence[str]) -> Tensor:
        return self.denoiser.encode(prompts)

    def describe_prompt(self, prompt: str) -> str:
        return self.denoiser.describe_prompt(prompt)


OBJECTIVES = ("eps", "v", "flow")  # what a fundiff UNet was trained to predict (training.TrainConfig.objective)


class UNetDenoiser:
    """fundiff's time- or class-conditioned UNet as a Denoiser.

    The UNet sees t normalised to [0, 1] as t / (T - 1) and, for the class kind, a one-hot
    class vector c (zeros = no class). ``objective`` says what it predicts: ``eps`` (the
    write-up), ``v`` = alpha eps - sigma x_0 (Salimans & Ho 2022; eps = sigma x_t + alpha v) or
    ``flow``, a rectified-flow velocity at flow time tau on input x_tau = x_t / (alpha + sigma)
    (flow.py; ``schedule`` is then flow.schedule(T)); all are served as eps. ``default_sampler``
    is :data:`FLOW_DEFAULT_SAMPLER` for ``flow``, else :data:`DEFAULT_SAMPLER`.
    ``class_names`` maps prompts to classes. ``autocast_dtype``
    (e.g. bfloat16) and ``channels_last`` choose the arithmetic (``devices.choose_precision``
    measures which is fastest); the model is converted to that memory format in place.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: NoiseSchedule,
        *,
        class_names: Sequence[str] = (),
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        objective: str = "eps",
        dataset: str | None = None,
    ) -> None:
        kind = model.config.kind
        if kind not in ("time", "class"):
            raise FundiffError(f"a {kind!r} model is not a diffusion model; use a 'time' or 'class' model")
        if objective not in OBJECTIVES:
            raise FundiffError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        self.objective = objective
        self.dataset = dataset  # what it was trained on (technique defaults may depend on it), None if unknown
        self.default_sampler = FLOW_DEFAULT_SAMPLER if objective == "flow" else DEFAULT_SAMPLER
        self.model = model
        self.schedule = schedule
        self.kind = kind
        self.channels = model.config.in_channels
        self.image_size = model.config.image_size
        self.num_classes = model.config.num_classes if kind == "class" else 0
        self.class_names = tuple(class_names) or tuple(str(i) for i in range(self.num_classes))
        self.autocast_dtype = autocast_dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            model.to(memory_format=torch.channels_last)  # NHWC weights: faster convolutions on most CPUs
        self.value_range = (0.0, 1.0)  # the write-up trains on MNIST in [0, 1]
        self.conditional = kind == "class"
        self.default_prompts = self.class_names if kind == "class" else ("",)

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

    def describe_prompt(self, prompt: str) -> str:
        """The class name a prompt names ("seven" -> "7"), "" for the null prompt."""
        if self.kind == "time":
            self.encode([prompt])  # raises for a non-null prompt
            return ""
        k = class_index(prompt, self.class_names)
        return "" if k is None else self.class_names[k]

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        t = t.to(x_t.device)
        abar = None  # abar_t, only where the objective needs it to become eps
        if self.objective != "eps":
            abar = self.schedule.abar_at(t.cpu()).to(x_t.device, torch.float32).reshape(-1, 1, 1, 1)
        if self.objective == "flow":
            tau, scale = flow.tau_and_scale(abar)
            x_in, t_in = x_t * scale, tau.flatten()
        else:
            x_in, t_in = x_t, t.to(torch.float32) / (self.schedule.T - 1)
        x_in = x_in.contiguous(memory_format=self.memory_format)
        with autocast_for(x_t.device, self.autocast_dtype):
            out = self.model(x_in, t_in, cond if self.kind == "class" else None)
        out = out.float().contiguous()
        if self.objective == "eps":
            return Prediction(out)
        if self.objective == "v":
            return Prediction((1 - abar).sqrt() * x_t + abar.sqrt() * out)
        return Prediction(flow.eps_from_velocity(x_in.contiguous(), out, tau))
