"""An exponential moving average of a model's weights, with a warmed-up decay."""

from __future__ import annotations

from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def ema_model(model: nn.Module, decay: float, *, warmup: bool = True) -> AveragedModel:
    """EMA of ``model``'s parameters (buffers copied) with decay min(decay, (1 + s) / (10 + s)) at step s.

    The warm-up keeps a short run's EMA from holding on to the random init. n_averaged starts
    at 1 (the copy of the init counts), so the update after optimizer step s sees n = s + 1.
    ``warmup=False``: ``decay`` from the first step, for a model that starts from trained weights (a fine-tune),
    whose EMA should hold on to them.
    """
    # torch's AveragedModel costs 1.2 ms per update on the class UNet (D=64, 2 threads, 300 updates)
    # against 0.9 ms for a hand-written foreach lerp: < 0.2% of a training step, so no custom EMA.

    def lerp(ema_params: list[Tensor], params: list[Tensor], n_averaged: Tensor) -> None:
        s = int(n_averaged) - 1
        get_ema_multi_avg_fn(min(decay, (1 + s) / (10 + s)) if warmup else decay)(ema_params, params, n_averaged)

    ema = AveragedModel(model, multi_avg_fn=lerp, use_buffers=False).eval().requires_grad_(False)
    ema.n_averaged.fill_(1)
    return ema


__all__ = ["ema_model"]
