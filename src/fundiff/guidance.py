"""Classifier-free guidance (Ho & Salimans 2022) as a Denoiser wrapper.

Convention (ERRATA item 6): eps = eps_u + scale * (eps_c - eps_u); scale 0 is
unconditional, 1 is conditional. (Code that writes (1 + w) eps_c - w eps_u uses
scale = 1 + w.) The conditional and unconditional passes run as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fundiff.denoisers import Denoiser, DenoiserWrapper, Prediction


class CFG(DenoiserWrapper):
    """Guide ``denoiser`` with scale ``scale`` against the null prompt ""; itself a Denoiser.

    The learned variance, if any, is the conditional pass's (as in DeepFloyd IF).
    """

    def __init__(self, denoiser: Denoiser, scale: float) -> None:
        super().__init__(denoiser)
        self.scale = float(scale)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        null = self.denoiser.encode([""] * x_t.shape[0]).to(cond.device, cond.dtype)
        if self.scale == 1.0:
            return self.denoiser(x_t, t, cond)
        if self.scale == 0.0:
            return self.denoiser(x_t, t, null)
        both = self.denoiser(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null]))
        eps_c, eps_u = both.eps.chunk(2)
        v = None if both.v is None else both.v.chunk(2)[0]
        return Prediction(eps_u + self.scale * (eps_c - eps_u), v)
