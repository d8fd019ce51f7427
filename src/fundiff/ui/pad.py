"""The drawing pad of the SDEdit and inpainting tabs: a plain canvas in a ``gr.HTML`` whose value is the drawing as
a PNG data URL, sent on every pen-up.

Gradio's own image editor exports its layers as uploaded files after each stroke (about 0.7 s on 2 cores with
software rendering) before an event can start; this pad sends one small PNG (a few kB) with the event itself, so
live SDEdit and inpainting answer in about the model's time plus gradio's queue.

Two modes: ``"ink"`` (black strokes on white, the drawing SDEdit reads, as `fundiff sdedit --image` reads a
file) and ``"mask"`` (strokes over a background image, shown translucent; the value holds only the strokes, on
transparent, and every painted pixel is part of the mask). Brush size, undo and clear are in the pad.
"""

from __future__ import annotations

import base64
import binascii
import io

import gradio as gr
import numpy as np

from fundiff.errors import FundiffError

PREFIX = "data:image/png;base64,"
MAX_CHARS = 8 * 2**20  # a 280x280 drawing is a few kB; anything this large is not the pad's

_TEMPLATE = """
<div class="fundiff-pad" data-mode="${mode}">
  <div class="pad-label">${label}</div>
  <div class="pad-stack" style="width: ${side}px; height: ${side}px">
    ${background ? `<img class="pad-bg" alt="" src="${background}">` : ''}
    <canvas class="pad-ink" width="${side}" height="${side}"></canvas>
  </div>
  <div class="pad-tools">
    <label>brush <input class="pad-size" type="range" min="2" max="60" value="${brush}"></label>
    <button type="button" class="pad-undo">undo</button>
    <button type="button" class="pad-clear">clear</button>
  </div>
</div>
"""

_CSS = """
.pad-label { font-size: var(--block-label-text-size); margin-bottom: 4px; }
.pad-stack { position: relative; border: 1px solid var(--border-color-primary); background: #fff; }
.pad-stack > * { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.pad-bg { image-rendering: pixelated; }
.pad-ink { touch-action: none; cursor: crosshair; }
.fundiff-pad[data-mode="mask"] .pad-ink { opacity: 0.7; }
.pad-tools { display: flex; gap: 8px; align-items: center; margin-top: 4px; }
.pad-tools button { border: 1px solid var(--border-color-primary); border-radius: 4px; padding: 0 8px; }
"""

# Draws segment by segment with round caps (opaque: a mask stroke is translucent by the canvas' CSS opacity, so
# overlapping strokes do not darken), keeps up to 30 undo snapshots, and sends the drawing on pen-up, undo and
# clear: props.value = the PNG (or "" when nothing is drawn), then the component's change event.
_JS = """
const c = element.querySelector('canvas.pad-ink');
const g = c.getContext('2d', { willReadFrequently: true });
const mask = element.querySelector('.fundiff-pad').dataset.mode === 'mask';
const size = element.querySelector('input.pad-size');
const history = [];
let down = false, last = null, inked = false;
const blank = () => {
  g.clearRect(0, 0, c.width, c.height);
  if (!mask) { g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height); }
};
const at = e => {
  const r = c.getBoundingClientRect();
  return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height];
};
const segment = (a, b) => {
  g.strokeStyle = mask ? '#ff3399' : '#000';
  g.lineWidth = Number(size.value); g.lineCap = 'round'; g.lineJoin = 'round';
  g.beginPath(); g.moveTo(a[0], a[1]); g.lineTo(b[0], b[1]); g.stroke();
};
const snapshot = () => {
  history.push([g.getImageData(0, 0, c.width, c.height), inked]);
  if (history.length > 30) history.shift();
};
const send = () => { props.value = inked ? c.toDataURL('image/png') : ''; };  // a new value is a change event
blank();
c.addEventListener('pointerdown', e => {
  snapshot(); down = true; c.setPointerCapture(e.pointerId);
  last = at(e); segment(last, last); inked = true;
});
c.addEventListener('pointermove', e => { if (!down) return; const p = at(e); segment(last, p); last = p; });
const up = () => { if (!down) return; down = false; send(); };
c.addEventListener('pointerup', up);
c.addEventListener('pointercancel', up);
element.querySelector('.pad-undo').addEventListener('click', () => {
  const shot = history.pop(); if (!shot) return;
  g.putImageData(shot[0], 0, 0); inked = shot[1]; send();
});
element.querySelector('.pad-clear').addEventListener('click', () => { snapshot(); blank(); inked = false; send(); });
"""


def pad(mode: str, *, label: str, side: int, brush: int, elem_id: str, background: str = "") -> gr.HTML:
    """The pad: ``mode`` "ink" or "mask", a ``side`` x ``side`` canvas, the brush's starting width in canvas
    pixels; ``background`` a data URL shown under a mask (:func:`png_data_url`; set it later by returning
    :func:`with_background`)."""
    if mode not in ("ink", "mask"):
        raise ValueError(f"a pad is 'ink' or 'mask', not {mode!r}")
    return gr.HTML(
        "",
        html_template=_TEMPLATE,
        css_template=_CSS,
        js_on_load=_JS,
        elem_id=elem_id,
        mode=mode,
        label=label,
        side=side,
        brush=brush,
        background=background,
    )


def with_background(component: gr.HTML, background: str) -> gr.HTML:
    """The update that shows ``background`` (a data URL) under ``component``'s strokes, which stay: an update
    replaces all of the pad's props, so it carries the others along."""
    return gr.HTML(**(component.props | {"background": background}))


def png_data_url(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 image as a PNG data URL (a mask pad's background)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode(value: str | None, what: str):
    """A pad's value as a PIL image, or None when nothing is drawn; anything but the pad's PNG data URL is a
    one-line error naming ``what``."""
    from PIL import Image, UnidentifiedImageError

    if not value:
        return None
    if not isinstance(value, str) or not value.startswith(PREFIX) or len(value) > MAX_CHARS:
        raise FundiffError(f"the {what} is not a drawing from the pad (a PNG data URL): draw it on the page")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(value[len(PREFIX) :], validate=True)))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        raise FundiffError(f"the {what} could not be read as a PNG: draw it again (or use 'clear')") from None
    return image
