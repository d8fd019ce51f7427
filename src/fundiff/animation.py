"""Sampling animations (the course's "sampling GIFs"): one frame per denoising step, x_t beside x̂_0.

:class:`Recorder` is a ``samplers.sample`` step hook (``on_step``) that only watches: every step it keeps the
batch's x_t' and its clean estimate x̂_0; :meth:`Recorder.save` writes them as an animated GIF, each frame a
grid with one cell per image of the batch (as the PNG grids: ``nrow`` per row), each cell x_t' | x̂_0. A
figure that runs several descents (SDEdit's starts, generate's without and with CFG) records them one after
the other. The GIF has one palette shared by all frames (median cut over the first, middle and last frames, no
dithering) and no repeated frames (a repeat lengthens the frame before it), so the same seed gives the same
bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor

from fundiff import io as fio
from fundiff.atomic import atomic_write_bytes
from fundiff.errors import FundiffError

FRAME_MS = 80  # per denoising step
LAST_MS = 1500  # the final frame stays a while before the loop restarts
PALETTE_COLOURS = 64  # fewer colours: smaller files (noise compresses badly), still smooth at 28-64 px


class Recorder:
    """An ``on_step`` hook that records (x_t', x̂_0) per step in [0, 1]; it never changes the sampling."""

    def __init__(self, value_range: tuple[float, float] = (0.0, 1.0), *, max_frames: int = 2000) -> None:
        self.lo, self.hi = value_range
        self.max_frames = max_frames
        self.frames: list[tuple[Tensor, Tensor]] = []

    def __call__(self, i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> None:
        if len(self.frames) >= self.max_frames:
            raise FundiffError(f"an animation holds at most {self.max_frames} frames; use fewer --steps")
        self.frames.append((self._unit(x_prev), self._unit(x0_hat)))
        return None

    def _unit(self, x: Tensor) -> Tensor:
        return ((x.detach().float().cpu() - self.lo) / (self.hi - self.lo)).clamp(0, 1)

    def frame_images(self, nrow: int | None = None, scale: int = 1) -> list:
        """The frames as PIL RGB images: a grid of cells x_t' | x̂_0, ``nrow`` cells per row (None: the batch)."""
        from PIL import Image

        out = []
        for x_t, x0 in self.frames:
            cells = torch.cat([x_t, x0], dim=-1)  # (B, C, H, 2W)
            if cells.shape[1] == 1:
                cells = cells.expand(-1, 3, -1, -1)
            g = fio.grid(cells, nrow=max(1, min(nrow or cells.shape[0], cells.shape[0])))
            if scale > 1:
                g = torch.nn.functional.interpolate(g[None], scale_factor=scale, mode="nearest")[0]
            out.append(Image.fromarray(fio.to_uint8(g).permute(1, 2, 0).numpy(), "RGB"))
        return out

    def gif_bytes(self, nrow: int | None = None, scale: int = 1) -> bytes:
        """The animated GIF (module docstring); no frames recorded is an error."""
        from PIL import Image

        if not self.frames:
            raise FundiffError("nothing to animate: the command ran no denoising step")
        images = self.frame_images(nrow, scale)
        frames, durations = [], []
        for im in images:  # a repeat lengthens the frame before it
            if frames and im.tobytes() == frames[-1].tobytes():
                durations[-1] += FRAME_MS
            else:
                frames.append(im)
                durations.append(FRAME_MS)
        durations[-1] += LAST_MS
        picks = [frames[0], frames[len(frames) // 2], frames[-1]]
        w, h = frames[0].size
        sheet = Image.new("RGB", (w, h * len(picks)))
        for k, im in enumerate(picks):
            sheet.paste(im, (0, k * h))
        palette = sheet.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT)
        quantized = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in frames]
        buf = io.BytesIO()
        quantized[0].save(buf, format="GIF", save_all=True, append_images=quantized[1:], duration=durations, loop=0,
                          optimize=False, disposal=1)  # fmt: skip
        return buf.getvalue()

    def save(self, path: str | Path, *, nrow: int | None = None, scale: int = 1) -> Path:
        """Write the GIF to ``path`` atomically (``nrow`` cells per row; None: the whole batch in one); returns it."""
        path = Path(path)
        atomic_write_bytes(path, self.gif_bytes(nrow, scale))
        return path


__all__ = ["FRAME_MS", "LAST_MS", "Recorder"]
