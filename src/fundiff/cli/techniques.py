"""The write-up's Part A techniques as ``fundiff`` subcommands, one per spec in :data:`fundiff.specs.TECHNIQUES`
(setup, noise, blur, denoise, generate, sdedit, inpaint, anagram, hybrid). Each writes a figure and its images
into --out.

Nothing here knows a technique's parameters: each subcommand's flags, types, help and defaults come from its
spec (the defaults from the figure function, per model where the spec says so), and its handler calls the
spec's figure function. This module adds what every command shares: --model (a fundiff model or DeepFloyd IF
stage I: a diffusers folder or a hub id such as DeepFloyd/IF-I-XL-v1.0, fundiff.backends.deepfloyd), the
input images and masks, --seed, --out, the sampler and timestep flags (fundiff.timesteps.resolve), device,
threads, precision and IF's options.

Guidance: convention 6 (docs/conventions.md): --guidance s means eps = eps_u + s (eps_c - eps_u);
s = 0 is unconditional, 1 conditional without guidance, s > 1 guided.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path

from fundiff import DEFAULT_SEED, specs
from fundiff.cli.common import (
    Formatter,
    add_device_threads,
    add_precision_option,
    add_sampler_options,
    add_timestep_options,
    sampler_from_args,
)
from fundiff.cli.common import nonneg_int as _nonneg_int
from fundiff.cli.common import positive_int as _pos_int
from fundiff.cli.common import seed_int as _seed_int
from fundiff.errors import FundiffError

DEFAULT_MODEL = "mnist-class"  # a shipped model's name


# -- flags from a spec --------------------------------------------------------------------------------
def register(subparsers) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add one subcommand per technique spec to ``subparsers``; returns {command name: handler(args)}."""
    handlers = {}
    for spec in specs.TECHNIQUES.values():
        p = subparsers.add_parser(
            spec.name, help=spec.summary, description=_description(spec), formatter_class=Formatter
        )
        _add_model(p)
        _add_inputs(p, spec.inputs)
        for param in spec.params:
            p.add_argument(
                param.cli_flag,
                dest=param.name,
                type=_cli_type(param),
                nargs="+" if param.many else None,
                default=None,
                metavar=param.metavar,
                help=f"{param.help} (default: {default_help(spec, param.name)})",
            )
        if spec.samples:
            add_sampler_options(p)
            if spec.extra.get("timesteps", True):
                add_timestep_options(p)
        if _animates(spec):
            p.add_argument(
                "--animate",
                action="store_true",
                help="also write NAME.gif beside the figure: one frame per denoising step, x_t beside x̂_0 "
                "(fundiff.animation)",
            )
        p.add_argument("--seed", type=_seed_int, default=DEFAULT_SEED, help="seed of all noise in the figure")
        p.add_argument(
            "--out", default=f"out/{spec.name}", help="output folder: NAME.png figure(s) and NAME/ with every image"
        )
        add_device_threads(p)
        add_precision_option(p)
        _add_if_options(p, upscale=spec.extra.get("upscale", False))
        handlers[spec.name] = functools.partial(run_technique, spec)
    return handlers


def _animates(spec: specs.Technique) -> bool:
    """Whether the figure function takes a step hook (``on_step``), so ``--animate`` can watch it."""
    import inspect

    return "on_step" in inspect.signature(spec.figure).parameters


def _description(spec: specs.Technique) -> str:
    if spec.name != "anagram":
        return spec.description
    from fundiff.views import describe_views

    return f"{spec.description} Views (checked when the command runs, so views registered later count too): " + (
        describe_views()
    )


def _cli_type(param: specs.Param) -> Callable[[str], object]:
    """An argparse type: one token checked by the parameter's kind (a one-line error naming what is allowed)."""

    def parse(text: str):
        try:
            return param.kind.check(text)
        except FundiffError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = param.name
    return parse


def technique_families() -> dict[str, object]:
    """The model families whose technique defaults --help lists: each fundiff dataset, and DeepFloyd IF."""
    from fundiff.backends.deepfloyd import IF_DEFAULTS
    from fundiff.data import CLASS_NAMES
    from fundiff.techniques import DATASET_DEFAULTS, DIGIT_DEFAULTS

    return {f"{ds} models": DATASET_DEFAULTS.get(ds, DIGIT_DEFAULTS) for ds in CLASS_NAMES} | {
        "DeepFloyd IF": IF_DEFAULTS
    }


def default_help(spec: specs.Technique, name: str) -> str:
    """What --help says of the default of ``spec``'s parameter ``name`` (per model family where it depends on it)."""
    per_model = spec.param(name).per_model
    if per_model is not None and per_model.field is not None:
        return specs.describe_defaults(per_model, technique_families())
    return spec.default_text(name)


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="shipped model name, the folder of a time- or class-conditioned model (./NAME for a local folder "
        "named like a shipped model), or DeepFloyd IF stage I: a diffusers folder or a hub id such as "
        "DeepFloyd/IF-I-XL-v1.0 (-L-, -M-)",
    )


def _add_if_options(p: argparse.ArgumentParser, *, upscale: bool) -> None:
    """Options of DeepFloyd IF models (refused for fundiff's own)."""
    p.add_argument(
        "--embeddings",
        default=None,
        metavar="FILE",
        help="DeepFloyd IF: precomputed T5 prompt embeddings, a .pth dict {prompt: tensor} (read with "
        "weights_only=True) or .safetensors; other prompts come from the cache or T5",
    )
    p.add_argument(
        "--offload",
        action="store_true",
        help="DeepFloyd IF on CUDA: the UNet, T5 and stage II take turns on the GPU instead of sharing it (less "
        "GPU memory, slower)",
    )
    if not upscale:
        return
    from fundiff.backends.deepfloyd import STAGE_II_DEFAULT

    p.add_argument(
        "--upscale",
        nargs="?",
        const=STAGE_II_DEFAULT,
        default=None,
        metavar="STAGE2",
        help=f"DeepFloyd IF: also upscale the samples to 256x256 with IF stage II (default {STAGE_II_DEFAULT}, or "
        "a local folder) and the same prompt embeddings",
    )
    p.add_argument("--upscale-steps", type=_pos_int, default=50, help="stage II denoising steps (IFPipeline's 50)")


def _add_inputs(p: argparse.ArgumentParser, inputs: str) -> None:
    """The input flags of a spec's ``inputs``: "image" (one), "images" (several), "image+mask"."""
    if not inputs:
        return
    from fundiff.images import FITS, INVERTS, MASK_PRESETS, drawing_names

    many = inputs == "images"
    shipped = ", ".join(drawing_names()) or "none"
    p.add_argument(
        "--image",
        nargs="+" if many else None,
        default=None,
        metavar="PATH",
        help=f"PNG/JPEG input{'s' if many else ''} of any size, or a shipped drawing ({shipped}); default: a test "
        "image of the model's dataset",
    )
    p.add_argument(
        "--index",
        type=_nonneg_int,
        default=0,
        help="which test-split image to use when --image is not given (MNIST test 0 is a 7)",
    )
    p.add_argument(
        "--fit", choices=FITS, default="pad", help="making --image square: pad with its background, center-crop, "
        "or box its ink like MNIST"
    )  # fmt: skip
    p.add_argument(
        "--invert", choices=INVERTS, default="auto", help="invert --image (auto: when its border is light, for "
        "grayscale models)"
    )  # fmt: skip
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder for the default test image (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)",
    )
    if inputs != "image+mask":
        return
    mask = p.add_mutually_exclusive_group()
    mask.add_argument(
        "--mask",
        default=None,
        metavar="PATH",
        help="mask image, white = fill in: the image's size (the --image file's, or the model's for the test image), "
        "made square with the same --fit",
    )
    mask.add_argument(
        "--mask-preset", choices=MASK_PRESETS, default="top-half", help="a preset mask when --mask is not given"
    )
    p.add_argument(
        "--mask-fit",
        action="store_true",
        help="accept a --mask of another size or shape than the image: square it with --fit and resize it",
    )


# -- running a technique -------------------------------------------------------------------------------
def run_technique(spec: specs.Technique, args: argparse.Namespace) -> None:
    """``fundiff NAME``: check --out, load the model, read the inputs, run the spec's figure function with the
    given parameters (the rest are the figure function's defaults for this model), report what was written.

    Everything is written into a temporary sibling of --out that moves into place at the end (fundiff.outputs):
    a failure at any point leaves nothing new behind."""
    from fundiff.outputs import staged_folder

    with staged_folder(args.out) as out:  # --out is checked before any work
        given = spec.check({p.name: getattr(args, p.name) for p in spec.params})  # every flag, before any model loads
        den, folder = _load(args)
        options: dict = {"out": str(out.tmp), "seed": args.seed}
        if spec.samples:
            options["sampler"] = sampler_from_args(args, den)
            if spec.extra.get("timesteps", True):
                from fundiff import timesteps as ts

                options["timesteps"] = ts.for_model(den, steps=args.steps, stride=args.stride)
        if spec.extra.get("upscale"):
            options["upscale"] = _upscale(args, den)
        if spec.name == "sdedit":  # what the write-up calls the figure of hand-drawn inputs
            options["name"] = "handdrawn" if args.image else "sdedit"
        from fundiff.figures import check_starts

        starts = {k: given[k] for k in ("i_start", "i_starts") if k in given}
        check_starts(den, options.get("timesteps"), **starts)  # before a test image is read (or downloaded)
        inputs = _inputs(args, den, folder, spec.inputs)
        recorder = None
        if getattr(args, "animate", False):
            from fundiff.animation import Recorder

            recorder = options["on_step"] = Recorder(den.value_range)
        fig = spec.run(den, inputs, given, **options)
        if recorder is not None:
            gif = recorder.save(Path(fig.paths[0]).with_suffix(".gif"), nrow=spec.resolve(den, given).get("n"))
            print(f"animation: {out.final(gif)} ({len(recorder.frames)} steps)")
    n = sum(1 for _ in Path(args.out).rglob("*.png"))
    print(f"wrote {', '.join(str(out.final(p)) for p in fig.paths)} ({n} PNGs in {args.out})")


def _load(args: argparse.Namespace):
    """(denoiser, model folder) for --model and --device; --sampler / --eta are checked before any model loads."""
    from fundiff.backends import runs
    from fundiff.devices import resolve_device

    device = resolve_device(args.device)  # a missing CUDA is reported before any model is fetched
    if "sampler" in args:  # the default needs the model; the flags alone are checked now
        from fundiff.samplers import DEFAULT_SAMPLER

        sampler_from_args(args, DEFAULT_SAMPLER)
    try:
        folder = runs.resolve(args.model)
    except FundiffError:
        if args.model != DEFAULT_MODEL:
            raise
        raise FundiffError(
            f"model {DEFAULT_MODEL!r} is not installed: train one with `fundiff train class --preset quick` and pass "
            "--model runs/mnist-class-quick"
        ) from None
    if getattr(args, "upscale", None) and runs.backend_for(folder).name == "fundiff":  # before the model loads
        from fundiff.backends.deepfloyd_stage2 import NEEDS_STAGE_ONE

        raise FundiffError(NEEDS_STAGE_ONE)
    options = {"embeddings": args.embeddings} if args.embeddings else {}
    options |= {"offload": True} if args.offload else {}
    return runs.load_denoiser(folder, device=device, precision=args.precision, **options), folder


def _inputs(args: argparse.Namespace, den, folder: Path, kind: str) -> list:
    """The figure function's positional inputs for the spec's ``inputs``: [] | [x_0] | [x_0, mask]."""
    if not kind:
        return []
    x_0 = _images(args, den, folder)
    if kind != "image+mask":
        return [x_0]
    from fundiff import images

    if args.mask:
        if args.fit == "ink":
            raise FundiffError(
                "--fit ink depends on the image's content, so a --mask cannot line up with it; use --fit pad or crop"
            )
        like = args.image or (den.image_size, den.image_size)  # the test image is image_size square
        mask = images.load_mask(args.mask, image_size=den.image_size, fit=args.fit, like=like, refit=args.mask_fit)
    else:
        if args.mask_fit:
            raise FundiffError("--mask-fit applies to a --mask image; drop it or give --mask PATH")
        mask = images.mask_preset(args.mask_preset, den.image_size)
    return [x_0, mask.to(x_0.device)]


def _images(args: argparse.Namespace, den, folder: Path):
    """The input images (B,C,H,W) on the model's device, in its value range: --image files or a test image
    of the dataset the model in ``folder`` was trained on."""
    from fundiff import images

    paths = args.image if isinstance(args.image, list) else ([args.image] if args.image else [])
    if paths:
        import torch

        kw = dict(channels=den.channels, image_size=den.image_size, value_range=den.value_range)
        return torch.cat([images.load_image(p, **kw, fit=args.fit, invert=args.invert) for p in paths]).to(den.device)
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config

    try:
        cfg = load_config(folder)
    except FundiffError:
        raise FundiffError(
            f"{args.model} has no test dataset to take an image from; pass --image PATH (a PNG or JPEG; the "
            "write-up uses a photo of the Campanile)"
        ) from None
    kw = dict(channels=den.channels, image_size=den.image_size, value_range=den.value_range)
    return images.dataset_image(runs.dataset_of(cfg), args.index, **kw, data_dir=args.data_dir).to(den.device)


def _upscale(args: argparse.Namespace, den):
    """The stage II upscaling that --upscale asks for (techniques.Upscale), or None."""
    if not args.upscale:
        return None
    from fundiff.backends import deepfloyd_stage2

    return deepfloyd_stage2.upscale_fn(
        den, args.upscale, precision=args.precision, offload=args.offload, steps=args.upscale_steps, seed=args.seed
    )
