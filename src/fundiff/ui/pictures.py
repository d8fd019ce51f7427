"""Pictures for the page: images as uint8 grids, hybrids near and far, the mask pad's background."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fundiff import io

CANVAS = 280  # drawing canvas side in pixels (10x a 28x28 digit)


def _unit(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    lo, hi = value_range
    return ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)


def tiles(x: Tensor, *, nrow: int, scale: int) -> np.ndarray:
    """Images (B,C,H,W) in [0, 1] as one (H', W', 3) uint8 grid, ``nrow`` per row, upscaled ``scale`` x (nearest)."""
    g = io.grid(x, nrow=max(1, nrow), padding=2)
    if scale > 1:
        g = torch.nn.functional.interpolate(g[None], scale_factor=scale, mode="nearest")[0]
    return io.to_uint8(g.expand(3, -1, -1)).permute(1, 2, 0).numpy()


def near_and_far(x: Tensor, *, scale: int = 8) -> np.ndarray:
    """Hybrids (B,C,H,W) in [0, 1]: up close (``scale`` x) above, from afar (1 x, centred) below, on white."""
    near, far = tiles(x, nrow=len(x), scale=scale), tiles(x, nrow=len(x), scale=1)
    canvas = np.full((near.shape[0] + 24 + far.shape[0], near.shape[1], 3), 255, np.uint8)
    canvas[: near.shape[0]] = near
    left = (near.shape[1] - far.shape[1]) // 2
    canvas[near.shape[0] + 24 :, left : left + far.shape[1]] = far
    return canvas


def model_view(x: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """What the model sees, x (1,C,S,S), upscaled (nearest, no border) to about CANVAS pixels to paint on:
    (H, W, 3) uint8, so that the painted strokes line up with the image's pixels."""
    big = torch.nn.functional.interpolate(_unit(x, value_range), scale_factor=max(1, CANVAS // x.shape[-1]))[0]
    return io.to_uint8(big.expand(3, -1, -1)).permute(1, 2, 0).numpy()
