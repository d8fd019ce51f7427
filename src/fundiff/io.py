"""Images in and out: grids, PNG files (written atomically), labeled figures and loss-curve plots.

Plots are built on ``matplotlib.figure.Figure`` directly (no pyplot), so nothing here selects a
backend or keeps figures alive in a global registry.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fundiff.atomic import atomic_write_bytes
from fundiff.errors import FundiffError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def to_uint8(images: Tensor) -> Tensor:
    """(B,C,H,W) or (C,H,W) float in [0,1] -> uint8, clamped."""
    return images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write one (C,H,W) float image in [0,1] (C = 1 or 3) as a PNG, atomically."""
    from PIL import Image

    arr = to_uint8(image)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise FundiffError(f"expected a (C,H,W) image with 1 or 3 channels, got shape {tuple(image.shape)}")
    pil = (
        Image.fromarray(arr[0].numpy(), "L")
        if arr.shape[0] == 1
        else Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")
    )
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def grid(images: Tensor, *, nrow: int, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile (B,C,H,W) images in [0,1] into one (C,H',W') image, ``nrow`` images per row."""
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=padding, pad_value=pad_value)


def save_grid(images: Tensor, path: str | Path, *, nrow: int, scale: int = 1) -> Path:
    """Save (B,C,H,W) images in [0,1] as one PNG grid, optionally upscaled (nearest) ``scale`` times."""
    g = grid(images, nrow=nrow)
    if scale > 1:
        g = torch.nn.functional.interpolate(g[None], scale_factor=scale, mode="nearest")[0]
    return save_png(g, path)


def save_labeled_grid(
    rows: Sequence[Tensor],
    row_labels: Sequence[str],
    path: str | Path,
    *,
    col_labels: Sequence[str] = (),
    title: str = "",
) -> Path:
    """A figure of image rows (each (N,C,H,W) in [0,1]) with row/column labels, via matplotlib."""
    from matplotlib.figure import Figure

    n_rows, n_cols = len(rows), max(r.shape[0] for r in rows)
    height = 1.3 * n_rows + (0.3 if title else 0)
    fig = Figure(figsize=(1.05 * n_cols + 0.8, height))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < row.shape[0]:
                img = row[j].detach().float().clamp(0, 1).cpu()
                ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap="gray", vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
            if i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / height) if title else None)  # keep the title clear of column titles
    return save_figure(fig, path)


def plot_loss(
    losses: Sequence[float], path: str | Path, *, title: str = "training loss", steps_per_epoch: int | None = None
) -> Path:
    """Loss per optimizer step on a log scale (as in the write-up), with a moving average."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ys = torch.tensor(list(losses), dtype=torch.float64)
    ax.plot(range(1, len(ys) + 1), ys.numpy(), lw=0.6, alpha=0.5, label="per step")
    k = max(1, len(ys) // 50)
    if len(ys) >= 2 * k > 2:
        smooth = torch.nn.functional.avg_pool1d(ys[None, None], k, stride=1)[0, 0]
        ax.plot(range(k, len(ys) + 1), smooth.numpy(), lw=1.5, label=f"mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step" + (f" ({steps_per_epoch} per epoch)" if steps_per_epoch else ""))
    ax.set_ylabel("MSE loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Render a matplotlib ``Figure`` (built without pyplot) to a PNG at ``path``, atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
