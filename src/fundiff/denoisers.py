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
prompt, for grid rows and file names); and ``traits``, a :class:`~fundiff.traits.ModelTraits` that
declares its optional capabilities, each with the plain model's default: ``default_sampler`` (the
sampler its users take when none is asked for: ``heun`` for a flow-matching UNet), ``objective``
(eps, v or flow: what the network predicts before it is served as eps), ``dataset``,
``technique_defaults`` (a model family's own Part A defaults: DeepFloyd IF's), ``autocast_dtype`` and
``channels_last`` (its arithmetic), ``pipeline_timesteps`` (a backend's own timesteps for a number of
steps: IF's scheduler), and a distilled student's ``default_steps``, ``timesteps_for`` and ``guidance`` (its
own spacing of few steps; the CFG scale built in). Users read ``den.traits.X``, never ``getattr``; a
:class:`DenoiserWrapper` (CFG, the composers) reports the wrapped model's traits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from fundiff import flow, timesteps
from fundiff.devices import autocast_for
from fundiff.errors import FundiffError
from fundiff.prompts import class_index
from fundiff.schedules import NoiseSchedule
from fundiff.traits import DEFAULT_SAMPLER, ModelTraits

FLOW_DEFAULT_SAMPLER = "heun"  # the default sampler of a flow-matching UNet: its velocity ODE, 2nd order
# what a fundiff UNet was trained to predict (training.TrainConfig.objective); course-flow: the course's flow edition
OBJECTIVES = ("eps", "v", "flow", "course-flow")
COURSE_FLOW_SAMPLER = "euler"  # the course's flow sampler: Euler steps of 1/T from pure noise (flow.py)
STUDENT_SAMPLER = "euler"  # a reflow student's: its paths are straight, which one Euler step follows exactly


@dataclass(frozen=True)
class Prediction:
    """A denoiser's output: noise estimate eps and, optionally, learned-variance channels v and the clean
    estimate x0 (a model whose grid reaches pure noise must give it: there x0 does not follow from eps)."""

    eps: Tensor  # (B,C,H,W)
    v: Tensor | None = None  # (B,C,H,W) in [-1, 1], or None for a fixed variance
    x0: Tensor | None = None  # (B,C,H,W) the model's own x0_hat, or None: x0_hat from eps (convention 2)

    def x0_hat(self, schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int) -> Tensor:
        """The clean estimate at (x_t, t), in x_t's dtype: :attr:`x0` if given, else from eps (convention 2)."""
        if self.x0 is not None:
            return self.x0.to(x_t.dtype)
        return schedule.x0_from_eps(x_t, t, self.eps.to(x_t.dtype))


@runtime_checkable
class Denoiser(Protocol):
    """x_t, t, cond -> Prediction. Also carries its schedule, image geometry, prompts and traits (module docstring)."""

    schedule: NoiseSchedule
    channels: int
    image_size: int
    value_range: tuple[float, float]  # range of clean images x_0: (0, 1) for fundiff's UNets, (-1, 1) for DeepFloyd IF

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction: ...

    device: torch.device  # where it computes; inputs go there
    conditional: bool  # encode takes non-null prompts (classifier-free guidance applies)
    default_prompts: tuple[str, ...]  # prompts to show when the user gives none
    traits: ModelTraits  # its optional capabilities: default sampler, objective, dataset, ... (traits.py)

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """Conditioning (len(prompts), ...) for each prompt; "" gives the null conditioning."""
        ...

    def describe_prompt(self, prompt: str) -> str:
        """A short label for ``prompt`` (e.g. its class name); "" for the null prompt. Bad prompts raise."""
        ...


class DenoiserWrapper:
    """Base of Denoisers that wrap another (guidance, composers): its schedule, geometry, prompts and traits.

    ``schedule``, the geometry and ``traits`` are the wrapped denoiser's, taken at construction (they are
    fixed); ``device``, ``conditional``, ``default_prompts`` and ``describe_prompt`` are the wrapped
    denoiser's, read when asked; a subclass may override them.
    """

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.schedule = denoiser.schedule
        self.channels = denoiser.channels
        self.image_size = denoiser.image_size
        self.value_range = denoiser.value_range
        self.traits = denoiser.traits

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def conditional(self) -> bool:
        return self.denoiser.conditional

    @property
    def default_prompts(self) -> tuple[str, ...]:
        return self.denoiser.default_prompts

    def encode(self, prompts: Sequence[str]) -> Tensor:
        return self.denoiser.encode(prompts)

    def describe_prompt(self, prompt: str) -> str:
        return self.denoiser.describe_prompt(prompt)


class UNetDenoiser:
    """fundiff's time- or class-conditioned UNet as a Denoiser: whatever the network predicts, it is served as eps.

    ``objective`` (its ``traits.objective``) says what the UNet was trained to predict and on which inputs:

    - ``eps`` (the write-up): the noise eps of x_t, from (x_t, t / (T - 1)); served as is;
    - ``v`` = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022), from (x_t, t / (T - 1));
      served as eps = sigma_t x_t + alpha_t v;
    - ``flow``: a rectified-flow *velocity* u = eps - x_0 (flow.py), from (x_tau, tau) with flow time
      tau_t and x_tau = x_t / (alpha_t + sigma_t) (``schedule`` is then flow.schedule(T)); served as
      eps = x_tau + (1 - tau_t) u (flow.eps_from_velocity).
    - ``course-flow``: the course's velocity x_data - x_noise = -u, from (x_tau, t = 1 - tau) (flow.py; its
      ``schedule`` is flow.schedule(T, endpoint=True), which reaches pure noise); served as that eps and
      x0 = x_tau - tau_t u (the Prediction carries x0: at tau = 1 it does not follow from eps).

    For the class kind the UNet also sees a one-hot class vector c (zeros = no class); ``class_names``
    maps prompts to classes. A text model (``text``: a fundiff.text.TextEncoder) takes free-text prompts
    instead, each the bag of words of its known words. ``traits.default_sampler`` is
    :data:`FLOW_DEFAULT_SAMPLER` for ``flow``, :data:`COURSE_FLOW_SAMPLER` for ``course-flow``, else ``ddpm``;
    ``dataset`` (what it was trained on), ``autocast_dtype`` (e.g. bfloat16) and ``channels_last`` go into its
    traits too. The last two choose the arithmetic (``devices.choose_precision`` measures which is fastest); the
    model is converted to that memory format in place. Returns eps (B,C,H,W) float32.
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
        text=None,
        student: dict | None = None,
    ) -> None:
        kind = model.config.kind
        if kind not in ("time", "class"):
            raise FundiffError(f"a {kind!r} model is not a diffusion model; use a 'time' or 'class' model")
        if objective not in OBJECTIVES:
            raise FundiffError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        self.traits = ModelTraits(
            default_sampler={"flow": FLOW_DEFAULT_SAMPLER, "course-flow": COURSE_FLOW_SAMPLER}.get(
                objective, DEFAULT_SAMPLER
            ),
            objective=objective,
            dataset=dataset,
            default_steps=schedule.T if objective == "course-flow" else None,
            autocast_dtype=autocast_dtype,
            channels_last=channels_last,
        )
        if student is not None:  # a distilled few-step student (training.distill): straight paths, CFG built in
            self.traits = replace(
                self.traits,
                default_sampler=STUDENT_SAMPLER,
                default_steps=int(student["steps"]),
                # a student made before the shift was measured has 1: evenly spaced (timesteps.trailing)
                timesteps_for=partial(timesteps.shifted, schedule.T, shift=float(student.get("time_shift", 1.0))),
                guidance=float(student["guidance"]) if kind == "class" else None,  # a time model has no CFG
                student=True,
            )
        self.model = model
        self.schedule = schedule
        self.kind = kind
        self.channels = model.config.in_channels
        self.image_size = model.config.image_size
        self.num_classes = model.config.num_classes if kind == "class" else 0
        self.text = text  # a text model's fundiff.text.TextEncoder: prompts are free text
        if text is not None and (kind != "class" or text.dim != self.num_classes):
            raise FundiffError(f"the text encoder gives {text.dim} numbers; the UNet takes {self.num_classes}")
        self.class_names = tuple(class_names) or tuple(str(i) for i in range(self.num_classes))
        if channels_last:
            model.to(memory_format=torch.channels_last)  # NHWC weights: faster convolutions on most CPUs
        self.value_range = (0.0, 1.0)  # the write-up trains on MNIST in [0, 1]
        self.conditional = kind == "class"
        self.default_prompts = self.class_names if kind == "class" else ("",)
        if text is not None:
            from fundiff.emoji import DEFAULT_PROMPTS

            self.class_names, self.default_prompts = (), DEFAULT_PROMPTS

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
        if self.text is not None:
            return self.text.encode(prompts, self.device)
        return self.one_hot([class_index(p, self.class_names) for p in prompts])

    def describe_prompt(self, prompt: str) -> str:
        """The class name a prompt names ("seven" -> "7"), "" for the null prompt."""
        if self.kind == "time":
            self.encode([prompt])  # raises for a non-null prompt
            return ""
        if self.text is not None:
            self.text.tokens(prompt)  # raises for a prompt of no known word
            return " ".join(prompt.split())
        k = class_index(prompt, self.class_names)
        return "" if k is None else self.class_names[k]

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        objective = self.traits.objective
        c = None if objective == "eps" else self.schedule.at(t, like=x_t)  # eps needs no conversion
        if objective == "flow":
            x_in, t_in = x_t / c.flow_scale, c.tau.flatten()
        elif objective == "course-flow":
            x_in, t_in = x_t / c.flow_scale, 1 - c.tau.flatten()  # the course's time t = 1 - tau
        else:
            x_in, t_in = x_t, t.to(x_t.device, torch.float32) / (self.schedule.T - 1)
        layout = torch.channels_last if self.traits.channels_last else torch.contiguous_format
        x_in = x_in.contiguous(memory_format=layout)
        with autocast_for(x_t.device, self.traits.autocast_dtype):
            out = self.model(x_in, t_in, cond if self.kind == "class" else None)
        out = out.float().contiguous()
        if objective == "eps":
            return Prediction(out)
        if objective == "v":
            return Prediction(c.sigma * x_t + c.alpha * out)
        x_tau = x_in.contiguous()
        if objective == "flow":
            return Prediction(flow.eps_from_velocity(x_tau, out, c.tau))
        u = -out  # the course's x_data - x_noise is minus fundiff's velocity eps - x0
        return Prediction(flow.eps_from_velocity(x_tau, u, c.tau), x0=flow.x0_from_velocity(x_tau, u, c.tau))
