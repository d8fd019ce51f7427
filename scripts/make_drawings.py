"""Make fundiff's shipped "hand-drawn" sample images (src/fundiff/assets/drawings/*.png).

Black strokes on a white 200x200 canvas, like a quick drawing in a paint program: thick
round-capped lines with a slight wobble, drawn at 4x and downsampled (anti-aliasing).
Deterministic (fixed seeds), so rerunning reproduces the committed PNGs:

    .venv/bin/python scripts/make_drawings.py [OUT_DIR]
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

SIZE, SCALE, WIDTH = 200, 4, 15  # canvas, supersampling factor, stroke width (final pixels)


def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 12) -> list[tuple[float, float]]:
    """n + 1 points on the circle (cx, cy, r) from angle a0 to a1 degrees (counter-clockwise, y down)."""
    angles = [math.radians(a0 + (a1 - a0) * i / n) for i in range(n + 1)]
    return [(cx + r * math.cos(a), cy - r * math.sin(a)) for a in angles]


# Each drawing: a list of strokes; each stroke a polyline of (x, y) points on the 200x200 canvas.
DRAWINGS: dict[str, list[list[tuple[float, float]]]] = {
    "two": [_arc(100, 72, 38, 160, -30) + [(62, 160), (148, 158)]],
    "seven": [[(55, 42), (148, 45), (88, 168)]],
    "four": [[(118, 32), (52, 122), (152, 120)], [(122, 62), (119, 172)]],
    "shirt": [
        [
            (78, 38),
            (48, 50),
            (22, 88),
            (46, 104),
            (62, 90),
            (62, 170),
            (138, 170),
            (138, 90),
            (154, 104),
            (178, 88),
            (152, 50),
            (122, 38),
        ]
        + _arc(100, 38, 22, 0, -180)[1:]
    ],
}


def _wobble(
    points: list[tuple[float, float]], rng: random.Random, step: float = 6.0, amount: float = 0.8
) -> list[tuple[float, float]]:
    """Resample a polyline every ``step`` px and shift points sideways by a smooth random offset."""
    out: list[tuple[float, float]] = []
    offset = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        nx, ny = (-(y1 - y0) / length, (x1 - x0) / length) if length else (0.0, 0.0)
        for i in range(max(1, round(length / step))):
            u = i / max(1, round(length / step))
            offset = 0.8 * offset + rng.gauss(0, amount)
            out.append((x0 + u * (x1 - x0) + nx * offset, y0 + u * (y1 - y0) + ny * offset))
    out.append(points[-1])
    return out


def draw(strokes: list[list[tuple[float, float]]], seed: int) -> Image.Image:
    rng = random.Random(seed)
    big = Image.new("L", (SIZE * SCALE, SIZE * SCALE), 255)
    pen = ImageDraw.Draw(big)
    w = WIDTH * SCALE
    for stroke in strokes:
        pts = [(x * SCALE, y * SCALE) for x, y in _wobble(stroke, rng)]
        pen.line(pts, fill=0, width=w, joint="curve")
        for x, y in (pts[0], pts[-1]):  # round caps
            pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=0)
    return big.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (name, strokes) in enumerate(DRAWINGS.items()):
        draw(strokes, seed=20040805 + i).save(out_dir / f"{name}.png", optimize=True)
        print(out_dir / f"{name}.png")


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[1] / "src" / "fundiff" / "assets" / "drawings"
    )
