"""Classifier-free guidance (Ho & Salimans 2022) as a Denoiser wrapper.

Convention 6 (docs/conventions.md): eps = eps_u + scale * (eps_c - eps_u); scale 0 is
unconditional, 1 is conditional. (Code that writes (1 + w) eps_c - w eps_u uses
scale = 1 + w.) The conditional and unconditional passes run as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fundiff import DEFAULT_GUIDANCE
from fundiff.denoisers import Denoiser, DenoiserWrapper, Prediction
from fundiff.errors import FundiffError


def scale_for(denoiser: Denoiser, scale: float | None = None, *, default: float = DEFAULT_GUIDANCE) -> float:
    """The CFG scale a figure or command applies: ``scale``, else ``default`` (the write-up's s = 5 for sampling,
    1 for the denoising figures); a guidance-distilled student (``traits.guidance``) has its own scale built in,
    so None gives that and any other scale is a one-line error."""
    built_in = denoiser.traits.guidance
    if built_in is None:
        return default if scale is None else float(scale)
    if scale is not None and float(scale) != built_in:
        raise FundiffError(
            f"this model has CFG s={built_in:g} built in (guidance distillation): drop --guidance or give "
            f"{built_in:g}; sample its teacher for other scales"
        )
    return built_in


class CFG(DenoiserWrapper):
    """Guide ``denoiser`` with scale ``scale`` against the null prompt ""; itself a Denoiser.

    ``denoiser`` must take prompts at call time (``conditional``): guiding an Anagram or a
    Hybrid would do nothing (their prompts are fixed at construction), so guide the base model
    inside them, ``Anagram(CFG(den, s), ...)``. The null conditioning is encoded once, on the
    first call, and shared by the batch. The learned variance, if any, is the conditional
    pass's (as in DeepFloyd IF); a model's own x0 estimate (Prediction.x0) is guided like eps. A model with
    guidance built in (``traits.guidance``: a distilled student) takes only that scale, in one call.
    """

    def __init__(self, denoiser: Denoiser, scale: float) -> None:
        if not denoiser.conditional:
            name = type(denoiser).__name__
            why = (
                f"{name} fixes its prompts at construction, so guiding it does nothing; "
                f"wrap the base model instead: {name}(CFG(den, s), ...)"
                if isinstance(denoiser, DenoiserWrapper)
                else f"{name} is an unconditional model (it takes no prompt or class); sample it without guidance"
            )
            raise FundiffError(f"CFG needs a denoiser that takes prompts: {why}")
        super().__init__(denoiser)
        self.scale = scale_for(denoiser, scale)
        self._null: Tensor | None = None  # (1, ...) conditioning of "", encoded on first use

    def null(self, batch: int, like: Tensor) -> Tensor:
        """The null conditioning (batch, ...) on ``like``'s device and dtype (encoded once, then expanded)."""
        if self._null is None:
            self._null = self.denoiser.encode([""])
        null = self._null.to(like.device, like.dtype)
        return null.expand(batch, *null.shape[1:])

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        if self.scale == 1.0 or self.traits.guidance is not None:  # no guidance, or the student's own
            return self.denoiser(x_t, t, cond)
        null = self.null(x_t.shape[0], cond)
        if self.scale == 0.0:
            return self.denoiser(x_t, t, null)
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null]))
        eps_c, eps_u = both.eps.chunk(2)
        v = None if both.v is None else both.v.chunk(2)[0]
        x0 = None
        if both.x0 is not None:  # x0 is affine in the velocity too: guided the same way
            x0_c, x0_u = both.x0.chunk(2)
            x0 = x0_u + self.scale * (x0_c - x0_u)
        return Prediction(eps_u + self.scale * (eps_c - eps_u), v, x0)
