"""Part A's sections: each runs one technique spec (fundiff.specs) on the tour's class-conditioned model.

A section names the technique, the parameter values it chooses (the tour's prompts and sizes; every other
parameter is the technique's own default for the model) and its inputs; :func:`run_technique` runs the
spec's figure function and derives the reproducing `fundiff` command from the same spec and values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fundiff import specs
from fundiff.tour.numbers import read_rates
from fundiff.tour.state import TEXT_CHOICES, Made, TourState


def run_technique(
    t: TourState,
    out: Path,
    name: str,
    given: dict,
    *,
    role: str = "class",
    drawings: Sequence[str] = (),
    mask_preset: str | None = None,
    options: dict | None = None,
    numbers: Sequence[tuple[str, str]] = (),
    note: str = "",
    animate: bool = False,
) -> Made:
    """Technique ``name`` on the role's model with ``given`` (None values: the technique's defaults), on the test
    image or the shipped ``drawings``, into ``out``; its figures and the `fundiff NAME` command that remakes them.
    ``animate``: also the sampling animation (fundiff.animation), as `fundiff NAME --animate` writes it."""
    spec = specs.technique(name)
    den = t.denoiser(role)
    given = {k: v for k, v in given.items() if v is not None}
    inputs, input_flags = _inputs(t, den, spec, drawings, mask_preset, role)
    run_options = {"out": out, "seed": t.seed, **(options or {})}
    timesteps = None
    if spec.samples:
        timesteps = t.timesteps(den)
        run_options |= {"sampler": t.sampler_for(den), "timesteps": timesteps}
    recorder = None
    if animate:
        from fundiff.animation import Recorder

        recorder = run_options["on_step"] = Recorder(den.value_range)
    fig = spec.run(den, inputs, given, **run_options)
    paths = list(fig.paths)
    if recorder is not None:
        paths.append(recorder.save(Path(fig.paths[0]).with_suffix(".gif"), nrow=spec.resolve(den, given).get("n")))
        input_flags = [*input_flags, "--animate"]
    from fundiff.samplers import default_sampler_of

    sampler = t.sampler if t.sampler is not None and t.sampler != default_sampler_of(den) else None
    argv = specs.technique_command(
        spec, t.names[role], given, inputs=input_flags, seed=t.seed, out=str(out), steps=t.sizes.steps,
        sampler=sampler, options=t.options(),
    )  # fmt: skip
    scales = guidance_scales(spec, spec.resolve(den, given), den) if spec.samples else []
    return Made(paths, argv, list(numbers), note, timesteps, scales)


def guidance_scales(spec: specs.Technique, values: dict, den) -> list[float]:
    """The CFG scales a run applies (for the manifest): generate samples at 1 and at --guidance; a run whose
    prompts are all null is unguided (scale 1), whatever --guidance says; a distilled student runs at its own
    built-in scale only (techniques.sampling_figure)."""
    prompts = [values[k] for k in ("prompt", "prompts", "low", "high") if k in values]
    flat = [p for v in prompts for p in (v if isinstance(v, list) else [v])]
    g = float(values["guidance"])
    if not any(p.strip() for p in flat) or g == 1.0:
        return [1.0]
    return [1.0, g] if spec.name == "generate" and den.traits.guidance is None else [g]


def _inputs(t: TourState, den, spec: specs.Technique, drawings: Sequence[str], mask_preset: str | None, role: str):
    """The figure's positional inputs and the CLI flags that read the same ones."""
    if not spec.inputs:
        return [], []
    if drawings:
        from fundiff import images

        kw = dict(channels=den.channels, image_size=den.image_size, value_range=den.value_range)
        x_0 = torch.cat([images.load_image(p, **kw, fit="pad", invert="auto") for p in drawings]).to(den.device)
        flags = ["--image", *drawings]
    else:
        x_0, flags = t.x0(den, role), []
    if spec.inputs != "image+mask":
        return [x_0], flags
    from fundiff import images

    mask = images.mask_preset(mask_preset or "top-half", den.image_size).to(den.device)
    return [x_0, mask], flags + ["--mask-preset", mask_preset or "top-half"]


# -- the sections ------------------------------------------------------------------------------------
def forward(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "noise", {})


def blur(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "blur", {})


def denoise(t: TourState, out: Path) -> Made:
    s = t.sizes
    return run_technique(t, out, "denoise", {"prompt": "", "i_start": s.i_start, "every": s.every})


def sampling(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "generate", {"prompts": [""], "n": t.sizes.n_single}, animate=True)


def cfg(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "generate", {"prompts": list(t.choices.cfg), "n": t.sizes.n})


def sdedit(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "sdedit", {"prompt": "", "i_starts": t.sizes.i_starts}, animate=True)


def handdrawn(t: TourState, out: Path) -> Made:
    given = {"prompt": t.choices.drawn_prompt, "i_starts": t.sizes.i_starts}
    return run_technique(t, out, "sdedit", given, drawings=t.choices.drawings, options={"name": "handdrawn"})


def img2img(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "sdedit", {"prompt": t.choices.img2img, "i_starts": t.sizes.i_starts})


def _inpaint(t: TourState, out: Path, method: str) -> Made:
    s = t.sizes
    given = {"prompt": t.choices.inpaint, "n": s.n, "method": method}
    if method == "repaint":
        given |= {"jump_length": s.jump_length, "resample": s.resample}
    return run_technique(t, out, "inpaint", given, mask_preset="top-half")


def inpaint(t: TourState, out: Path) -> Made:
    return _inpaint(t, out, "replace")


def repaint(t: TourState, out: Path) -> Made:
    return _inpaint(t, out, "repaint")


def anagram(t: TourState, out: Path) -> Made:
    given = {"prompts": list(t.choices.anagram), "views": [t.choices.view], "n": t.sizes.n}
    return run_technique(t, out, "anagram", given, numbers=[read_rates()], animate=True)


def hybrid(t: TourState, out: Path) -> Made:
    low, high = t.choices.hybrid  # the filter: the technique's default for the model's dataset (by measurement)
    return run_technique(t, out, "hybrid", {"low": low, "high": high, "n": t.sizes.n}, numbers=[read_rates()])


def hybrid_bands(t: TourState, out: Path) -> Made:
    low, mid, high = t.choices.hybrid3  # the mid filter: the technique's default (kernel 5, sigma 0.75)
    return run_technique(t, out, "hybrid", {"low": low, "mid": mid, "high": high, "n": t.sizes.n})


# -- the same techniques with text prompts, on the emoji model (role "emoji") ------------------------------------
def text_cfg(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    return run_technique(t, out, "generate", {"prompts": list(c.cfg), "n": t.sizes.n}, role="emoji", animate=True)


def text_sdedit(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "sdedit", {"prompt": "", "i_starts": t.sizes.i_starts}, role="emoji")


def text_img2img(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    return run_technique(t, out, "sdedit", {"prompt": c.img2img, "i_starts": t.sizes.i_starts}, role="emoji")


def text_handdrawn(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    given = {"prompt": c.drawn_prompt, "i_starts": t.sizes.i_starts}
    return run_technique(t, out, "sdedit", given, role="emoji", drawings=c.drawings, options={"name": "handdrawn"})


def text_inpaint(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    given = {"prompt": c.inpaint, "n": t.sizes.n, "method": "replace"}
    return run_technique(t, out, "inpaint", given, role="emoji", mask_preset="top-half")


def text_anagram(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    given = {"prompts": list(c.anagram), "views": [c.view], "n": t.sizes.n}
    return run_technique(t, out, "anagram", given, role="emoji")


def text_hybrid(t: TourState, out: Path) -> Made:
    c = TEXT_CHOICES
    low, high = c.hybrid
    return run_technique(t, out, "hybrid", {"low": low, "high": high, "n": t.sizes.n}, role="emoji")
