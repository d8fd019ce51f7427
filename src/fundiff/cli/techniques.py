"""The write-up's Part A techniques as ``fundiff`` subcommands: setup, noise, blur, denoise, generate,
sdedit, inpaint, anagram, hybrid. Each writes a figure and its images into --out.

--model is a fundiff model or DeepFloyd IF stage I (a diffusers folder or a hub id such as
DeepFloyd/IF-I-XL-v1.0, fundiff.backends.deepfloyd). Defaults that depend on the model (prompts,
the hybrid's filter) come from the denoiser's ``technique_defaults`` (techniques.defaults_for).

Guidance: convention 6 (docs/conventions.md): --guidance s means eps = eps_u + s (eps_c - eps_u);
s = 0 is unconditional, 1 conditional without guidance, s > 1 guided. (Code that writes
(1 + w) eps_c - w eps_u uses s = 1 + w.) See techniques.py for the T = 300 defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fundiff import DEFAULT_GUIDANCE, DEFAULT_SEED
from fundiff.cli.common import Formatter as _Formatter
from fundiff.cli.common import add_device_threads, add_precision_option, add_sampler_options, sampler_from_args
from fundiff.cli.common import finite_float as _float
from fundiff.cli.common import nonneg_int as _nonneg_int
from fundiff.cli.common import odd_int as _odd_int
from fundiff.cli.common import positive_float as _pos_float
from fundiff.cli.common import positive_int as _pos_int
from fundiff.cli.common import seed_int as _seed_int
from fundiff.errors import FundiffError

DEFAULT_MODEL = "mnist-class"  # a shipped model's name
_GUIDANCE_HELP = (
    "CFG scale s: eps = eps_u + s (eps_c - eps_u); 0 unconditional, 1 conditional (no guidance), >1 guided; "
    "= 1 + w in the (1 + w) eps_c - w eps_u convention"
)


# -- shared flags -------------------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser, name: str, *, guidance: float | None, steps: bool = True) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="shipped model name, the folder of a time- or class-conditioned model (./NAME for a local folder "
        "named like a shipped model), or DeepFloyd IF stage I: a diffusers folder or a hub id such as "
        "DeepFloyd/IF-I-XL-v1.0 (-L-, -M-)",
    )
    if guidance is not None:  # the commands that run the reverse process
        p.add_argument("--guidance", type=_float, default=guidance, help=_GUIDANCE_HELP)
        add_sampler_options(p)
    p.add_argument(
        "--seed",
        type=_seed_int,
        default=DEFAULT_SEED,
        help="seed of all noise in the figure (the write-up re-seeds per figure)",
    )
    p.add_argument("--out", default=f"out/{name}", help="output folder: NAME.png figure(s) and NAME/ with every image")
    if steps:  # the timestep list of the command (setup has its own --num-steps)
        _add_steps(p)
    add_device_threads(p)
    add_precision_option(p)
    _add_if_options(p)


def _add_steps(p: argparse.ArgumentParser) -> None:
    steps = p.add_mutually_exclusive_group()
    steps.add_argument(
        "--stride",
        type=_pos_int,
        default=None,
        help="strided timesteps T-1, T-1-stride, ..., 0 (default: round(0.03 T), 9 for T=300: the write-up's 30 on "
        "T=1000)",
    )
    steps.add_argument(
        "--steps", type=_pos_int, default=None, help="instead of --stride: this many evenly spaced timesteps"
    )


def _add_if_options(p: argparse.ArgumentParser) -> None:
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


def _add_image(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    from fundiff.images import FITS, INVERTS, drawing_names

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
        "--fit",
        choices=FITS,
        default="pad",
        help="making --image square: pad with its background, center-crop, or box its ink like MNIST",
    )
    p.add_argument(
        "--invert",
        choices=INVERTS,
        default="auto",
        help="invert --image (auto: when its border is light, for grayscale models)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder for the default test image (default: $FUNDIFF_DATA or ~/.cache/fundiff/data)",
    )


def _add_noise_levels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--t",
        type=_nonneg_int,
        nargs="+",
        default=None,
        metavar="T",
        help="noise timesteps in 0..T-1 (default: the write-up's 250, 500, 750 of 1000 scaled to T: 75 150 225 for "
        "T=300)",
    )


def _add_blur(p: argparse.ArgumentParser, *, kernel_size: int, sigma: float) -> None:
    p.add_argument("--kernel-size", type=_odd_int, default=kernel_size, help="Gaussian kernel size (odd)")
    p.add_argument("--sigma", type=_pos_float, default=sigma, help="Gaussian standard deviation in pixels")


def view_spec(text: str) -> str:
    """An argparse type: a view spec the registry knows *now* ("vflip", "rot90:1"), checked when parsed."""
    from fundiff.views import get_view

    try:
        get_view(text)
    except FundiffError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_samples(p: argparse.ArgumentParser, n: int) -> None:
    p.add_argument("--n", type=_pos_int, default=n, help="number of samples")


def register(subparsers) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add the Part A subcommands to ``subparsers``; returns {command name: handler(args)}."""
    commands = {
        "setup": (_parser_setup, _cmd_setup),
        "noise": (_parser_noise, _cmd_noise),
        "blur": (_parser_blur, _cmd_blur),
        "denoise": (_parser_denoise, _cmd_denoise),
        "generate": (_parser_generate, _cmd_generate),
        "sdedit": (_parser_sdedit, _cmd_sdedit),
        "inpaint": (_parser_inpaint, _cmd_inpaint),
        "anagram": (_parser_anagram, _cmd_anagram),
        "hybrid": (_parser_hybrid, _cmd_hybrid),
    }
    for add_parser, _ in commands.values():
        add_parser(subparsers)
    return {name: handler for name, (_, handler) in commands.items()}


def _parser_noise(subparsers) -> None:
    """The ``noise`` subcommand's parser."""
    p = subparsers.add_parser(
        "noise",
        help="the forward process: a test image noised at several t",
        description="Write-up 1.1: x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).",
        formatter_class=_Formatter,
    )
    _add_common(p, "noise", guidance=None)
    _add_image(p)
    _add_noise_levels(p)


def _parser_blur(subparsers) -> None:
    """The ``blur`` subcommand's parser."""
    p = subparsers.add_parser(
        "blur",
        help="classical denoising: Gaussian blur of the noisy images",
        description="Write-up 1.2: the noisy images of `noise` (same seed), Gaussian-blurred.",
        formatter_class=_Formatter,
    )
    _add_common(p, "blur", guidance=None)
    _add_image(p)
    _add_noise_levels(p)
    _add_blur(p, kernel_size=5, sigma=1.0)


def _parser_denoise(subparsers) -> None:
    """The ``denoise`` subcommand's parser."""
    p = subparsers.add_parser(
        "denoise",
        help="one-step and strided iterative denoising, compared with blur",
        description="Write-up 1.3-1.4: one-step denoising of the `noise` images; iterative denoising from "
        "timesteps[--i-start]; "
        "the comparison original | noisy | iterative | one-step | blur.",
        formatter_class=_Formatter,
    )
    _add_common(p, "denoise", guidance=1.0)
    _add_image(p)
    _add_noise_levels(p)
    p.add_argument(
        "--prompt",
        default=None,
        help="prompt the denoiser is conditioned on (a class name, or text for IF); '' is the null prompt "
        "(default: the model's generic prompt: '' for fundiff's models, 'a high quality photo' for IF)",
    )
    p.add_argument(
        "--i-start",
        type=_nonneg_int,
        default=10,
        help="index into the strided timesteps where iterative denoising starts",
    )
    p.add_argument("--every", type=_pos_int, default=5, help="show every N-th iterative step")
    _add_blur(p, kernel_size=5, sigma=1.0)


def _parser_generate(subparsers) -> None:
    """The ``generate`` subcommand's parser."""
    p = subparsers.add_parser(
        "generate",
        help="sample from pure noise, without and with classifier-free guidance",
        description="Write-up 1.5-1.6: samples from x_T ~ N(0, I) per prompt, at CFG scale 1 (none) and --guidance, "
        "from the same "
        "noise.",
        formatter_class=_Formatter,
    )
    _add_common(p, "generate", guidance=DEFAULT_GUIDANCE)
    p.add_argument(
        "--prompt",
        nargs="+",
        default=None,
        help="prompts (class names, e.g. 3 or sneaker; text for IF; '' for none) (default: every class; '' for a "
        "time model; 'a high quality photo' for IF)",
    )
    _add_samples(p, 5)
    _add_upscale(p)


def _add_upscale(p: argparse.ArgumentParser) -> None:
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


def _parser_setup(subparsers) -> None:
    """The ``setup`` subcommand's parser."""
    from fundiff.techniques import WRITEUP_SETUP_STEPS

    p = subparsers.add_parser(
        "setup",
        help="the write-up's set-up table: prompts x number of denoising steps",
        description="Write-up part 0: one sample per prompt for each num_inference_steps, on the model's own "
        "timesteps for that count (DeepFloyd IF's scheduler), from the same noise.",
        formatter_class=_Formatter,
    )
    _add_common(p, "setup", guidance=DEFAULT_GUIDANCE, steps=False)
    p.add_argument(
        "--prompts",
        nargs="+",
        default=None,
        help="prompts, one column each (default: IF: the write-up's snowy village / man wearing a hat / rocket "
        "ship; else the model's default prompts)",
    )
    p.add_argument(
        "--num-steps",
        type=_pos_int,
        nargs="+",
        default=list(WRITEUP_SETUP_STEPS),
        help="numbers of denoising steps, one row each",
    )
    _add_upscale(p)


def _parser_sdedit(subparsers) -> None:
    """The ``sdedit`` subcommand's parser."""
    p = subparsers.add_parser(
        "sdedit",
        help="SDEdit: noise an image to timesteps[i_start], then denoise (image-to-image)",
        description="Write-up 1.7: unconditioned (--prompt '') and text-conditioned image-to-image translation, and "
        "editing "
        "hand-drawn images (--image).",
        formatter_class=_Formatter,
    )
    _add_common(p, "sdedit", guidance=DEFAULT_GUIDANCE)
    _add_image(p, many=True)
    p.add_argument(
        "--prompt",
        default=None,
        help="prompt to edit towards; '' is unconditioned (default: '' for fundiff's models, 'a high quality "
        "photo' for IF)",
    )
    p.add_argument(
        "--i-start",
        type=_nonneg_int,
        nargs="+",
        default=[1, 3, 5, 7, 10, 20],
        help="start indices into the strided timesteps (larger: less noise, closer to the input)",
    )


def _parser_inpaint(subparsers) -> None:
    """The ``inpaint`` subcommand's parser."""
    from fundiff.edits import INPAINT_METHODS
    from fundiff.images import MASK_PRESETS

    p = subparsers.add_parser(
        "inpaint",
        help="inpainting: new content where the mask is 1, the original elsewhere",
        description="Write-up 1.7.2: after every step the known region is replaced by the original noised to t'. "
        "--method repaint "
        "adds RePaint's resampling (Lugmayr et al. 2022).",
        formatter_class=_Formatter,
    )
    _add_common(p, "inpaint", guidance=DEFAULT_GUIDANCE)
    _add_image(p)
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
    p.add_argument(
        "--method",
        choices=INPAINT_METHODS,
        default="replace",
        help="replace: the write-up's method; repaint: with RePaint's jumps back up",
    )
    p.add_argument("--jump-length", type=_pos_int, default=5, help="repaint: strided steps to jump back up")
    p.add_argument(
        "--resample", type=_pos_int, default=5, help="repaint: times each jump point is resampled (1 = replace)"
    )
    p.add_argument(
        "--prompt",
        default=None,
        help="prompt for the new content; '' is unconditioned (default: '' for fundiff's models, 'a high "
        "quality photo' for IF)",
    )
    _add_samples(p, 3)


def _parser_anagram(subparsers) -> None:
    """The ``anagram`` subcommand's parser."""
    from fundiff.views import describe_views, view_specs

    p = subparsers.add_parser(
        "anagram",
        help="visual anagrams: an image that shows another prompt under a view",
        description="Write-up 1.8 (Geng et al. 2024): eps = mean_i V_i^-1(eps(V_i(x_t), p_i)). Views: "
        + describe_views(),
        formatter_class=_Formatter,
    )
    _add_common(p, "anagram", guidance=DEFAULT_GUIDANCE)
    p.add_argument(
        "--prompts",
        nargs="+",
        default=None,
        help="one prompt per view; the first is seen as is (default: 6 9 for digits; the write-up's campfire / old "
        "man for IF)",
    )
    p.add_argument(
        "--view",
        nargs="+",
        type=view_spec,
        default=None,
        metavar="VIEW",
        help="view(s) for prompts 2.. (the first prompt gets identity), or one per prompt (default: rot180 for "
        "digits, vflip for IF): a registered view "
        f"({', '.join(view_specs())}; checked when the command runs, so views registered later count too)",
    )
    _add_samples(p, 4)


def _parser_hybrid(subparsers) -> None:
    """The ``hybrid`` subcommand's parser."""
    p = subparsers.add_parser(
        "hybrid",
        help="hybrid images: low frequencies of one prompt, high of another",
        description="Write-up 1.9 (factorized diffusion, Geng et al. 2024): eps = lowpass(eps(x_t, low)) + "
        "highpass(eps(x_t, "
        "high)).",
        formatter_class=_Formatter,
    )
    _add_common(p, "hybrid", guidance=DEFAULT_GUIDANCE)
    p.add_argument("--low", default=None, help="prompt seen from afar (low frequencies) (default: 0; IF: a skull)")
    p.add_argument("--high", default=None, help="prompt seen up close (high frequencies) (default: 1; IF: waterfalls)")
    p.add_argument("--kernel-size", type=_odd_int, default=None, help="Gaussian kernel size (odd) (default: 9; IF: 33)")
    p.add_argument(
        "--sigma", type=_pos_float, default=None, help="Gaussian standard deviation in pixels (default: 1.5; IF: 2)"
    )
    _add_samples(p, 4)


# -- loading -------------------------------------------------------------------------------------------
def _load(args: argparse.Namespace):
    """(denoiser, timesteps, model folder) for --model, --device, --stride/--steps."""
    from fundiff import timesteps as ts_lib
    from fundiff.backends import runs
    from fundiff.devices import resolve_device
    from fundiff.techniques import default_timesteps

    device = resolve_device(args.device)  # a missing CUDA is reported before any model is fetched
    if "sampler" in args:  # --sampler / --eta are checked before any model is fetched; the default needs the model
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
    options = {"embeddings": args.embeddings} if args.embeddings else {}
    options |= {"offload": True} if args.offload else {}
    den = runs.load_denoiser(folder, device=device, precision=args.precision, **options)
    T = den.schedule.T
    if "steps" not in args:  # setup: timesteps per --num-steps
        timesteps = []
    elif args.steps is not None:
        timesteps = ts_lib.strided(T, steps=args.steps)
    elif args.stride is not None:
        timesteps = ts_lib.strided(T, stride=args.stride)
    else:
        timesteps = default_timesteps(T)
    return den, timesteps, folder


def _inputs(args: argparse.Namespace, den, folder: Path):
    """The input images (B,C,H,W) on the model's device, in its value range: --image files or a test image
    of the dataset the model in ``folder`` was trained on."""
    from fundiff import images

    paths = args.image if isinstance(args.image, list) else ([args.image] if args.image else [])
    if paths:
        import torch

        return torch.cat(
            [
                images.load_image(
                    p,
                    channels=den.channels,
                    image_size=den.image_size,
                    value_range=den.value_range,
                    fit=args.fit,
                    invert=args.invert,
                )
                for p in paths
            ]
        ).to(den.device)
    from fundiff import data
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config

    try:
        cfg = load_config(folder)
    except FundiffError:
        raise FundiffError(
            f"{args.model} has no test dataset to take an image from; pass --image PATH (a PNG or JPEG; the "
            "write-up uses a photo of the Campanile)"
        ) from None
    dataset = runs.dataset_of(cfg)
    x_test, _ = data.load_split(dataset, args.data_dir, train=False)
    if args.index >= len(x_test):
        raise FundiffError(f"--index must be in 0..{len(x_test) - 1}, got {args.index}")
    x = data.to_unit_float(x_test[args.index : args.index + 1])
    if x.shape[-1] != den.image_size:
        raise FundiffError(
            f"the model takes {den.image_size}x{den.image_size} images but {dataset} has {x.shape[-1]}x{x.shape[-1]}; "
            "pass --image"
        )
    lo, hi = den.value_range
    return (lo + (hi - lo) * x).to(den.device)


def _check_ts(ts, T: int) -> None:
    if ts is not None and any(not 0 <= t < T for t in ts):
        raise FundiffError(f"--t values must be in 0..{T - 1} for this model, got {' '.join(map(str, ts))}")


def _done(fig, out) -> None:
    n = sum(1 for _ in Path(out).rglob("*.png"))
    print(f"wrote {', '.join(str(p) for p in fig.paths)} ({n} PNGs in {out})")


# -- commands ------------------------------------------------------------------------------------------
def _cmd_noise(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, _, folder = _load(args)
    _check_ts(args.t, den.schedule.T)
    _done(techniques.noise_figure(den, _inputs(args, den, folder), args.t, out=args.out, seed=args.seed), args.out)


def _cmd_blur(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, _, folder = _load(args)
    _check_ts(args.t, den.schedule.T)
    fig = techniques.blur_figure(
        den,
        _inputs(args, den, folder),
        args.t,
        kernel_size=args.kernel_size,
        sigma=args.sigma,
        out=args.out,
        seed=args.seed,
    )
    _done(fig, args.out)


def _cmd_denoise(args: argparse.Namespace) -> None:
    from fundiff import techniques
    from fundiff import timesteps as ts_lib

    den, timesteps, folder = _load(args)
    _check_ts(args.t, den.schedule.T)
    sampler = sampler_from_args(args, den)  # every check before the first figure writes anything
    ts_lib.from_start(timesteps, args.i_start)
    x_0 = _inputs(args, den, folder)
    prompt = _prompt(args, den)
    one = techniques.one_step_figure(
        den, x_0, args.t, prompt=prompt, guidance=args.guidance, out=args.out, seed=args.seed
    )
    it = techniques.iterative_figure(
        den,
        x_0,
        timesteps=timesteps,
        sampler=sampler,
        i_start=args.i_start,
        every=args.every,
        prompt=prompt,
        guidance=args.guidance,
        kernel_size=args.kernel_size,
        sigma=args.sigma,
        out=args.out,
        seed=args.seed,
    )
    _done(techniques.Figure({}, one.paths + it.paths), args.out)


def _cmd_generate(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, timesteps, _ = _load(args)
    prompts = args.prompt if args.prompt is not None else list(den.default_prompts)
    _done(
        techniques.sampling_figure(
            den,
            prompts,
            n=args.n,
            guidance=args.guidance,
            timesteps=timesteps,
            sampler=sampler_from_args(args, den),
            upscale=_upscale(args, den),
            out=args.out,
            seed=args.seed,
        ),
        args.out,
    )


def _prompt(args: argparse.Namespace, den) -> str:
    """--prompt, else the model's generic prompt ('' for fundiff's models, 'a high quality photo' for IF)."""
    from fundiff.techniques import defaults_for

    return args.prompt if args.prompt is not None else defaults_for(den).prompt


def _upscale(args: argparse.Namespace, den):
    """The stage II upscaling that --upscale asks for (techniques.Upscale), or None."""
    if not args.upscale:
        return None
    from fundiff.backends import deepfloyd

    return deepfloyd.upscale_fn(
        den, args.upscale, precision=args.precision, offload=args.offload, steps=args.upscale_steps, seed=args.seed
    )


def _cmd_setup(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, _, _ = _load(args)
    prompts = args.prompts or list(techniques.defaults_for(den).setup_prompts or den.default_prompts)
    fig = techniques.setup_figure(
        den,
        prompts,
        steps=args.num_steps,
        guidance=args.guidance,
        sampler=sampler_from_args(args, den),
        upscale=_upscale(args, den),
        out=args.out,
        seed=args.seed,
    )
    _done(fig, args.out)


def _cmd_sdedit(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, timesteps, folder = _load(args)
    if any(i >= len(timesteps) for i in args.i_start):
        raise FundiffError(
            f"--i-start values must be in 0..{len(timesteps) - 1} for {len(timesteps)} timesteps, got "
            f"{' '.join(map(str, args.i_start))}"
        )
    fig = techniques.sdedit_figure(
        den,
        _inputs(args, den, folder),
        i_starts=args.i_start,
        prompt=_prompt(args, den),
        guidance=args.guidance,
        timesteps=timesteps,
        sampler=sampler_from_args(args, den),
        name="handdrawn" if args.image else "sdedit",
        out=args.out,
        seed=args.seed,
    )
    _done(fig, args.out)


def _cmd_inpaint(args: argparse.Namespace) -> None:
    from fundiff import images, techniques

    den, timesteps, folder = _load(args)
    x_0 = _inputs(args, den, folder)
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
    fig = techniques.inpaint_figure(
        den,
        x_0,
        mask.to(x_0.device),
        n=args.n,
        method=args.method,
        jump_length=args.jump_length,
        resample=args.resample,
        prompt=_prompt(args, den),
        guidance=args.guidance,
        timesteps=timesteps,
        sampler=sampler_from_args(args, den),
        out=args.out,
        seed=args.seed,
    )
    _done(fig, args.out)


def _cmd_anagram(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, timesteps, _ = _load(args)
    defaults = techniques.defaults_for(den)
    prompts, views = list(args.prompts or defaults.anagram_prompts), list(args.view or defaults.anagram_views)
    if len(views) == len(prompts) - 1:
        views = ["identity"] + views
    if len(views) != len(prompts):
        raise FundiffError(
            f"give one --view per prompt after the first ({len(prompts) - 1}) or one per prompt ({len(prompts)}); got "
            f"{len(views)}"
        )
    _done(
        techniques.anagram_figure(
            den,
            prompts,
            views,
            n=args.n,
            guidance=args.guidance,
            timesteps=timesteps,
            sampler=sampler_from_args(args, den),
            out=args.out,
            seed=args.seed,
        ),
        args.out,
    )


def _cmd_hybrid(args: argparse.Namespace) -> None:
    from fundiff import techniques

    den, timesteps, _ = _load(args)
    d = techniques.defaults_for(den)
    fig = techniques.hybrid_figure(
        den,
        d.hybrid_prompts[0] if args.low is None else args.low,
        d.hybrid_prompts[1] if args.high is None else args.high,
        kernel_size=args.kernel_size or d.hybrid_kernel_size,
        sigma=args.sigma or d.hybrid_sigma,
        n=args.n,
        guidance=args.guidance,
        timesteps=timesteps,
        sampler=sampler_from_args(args, den),
        out=args.out,
        seed=args.seed,
    )
    _done(fig, args.out)
