"""``fundiff evaluate`` (wired in by cli.py via ``register``) and the handler of ``fundiff train classifier``.

``evaluate`` measures what a model's kind allows: a one-step denoiser gets the sigma sweep
(MSE / PSNR) beside the best Gaussian blur; a time-conditioned model gets FID, the FID
floor and a class histogram of its samples; a class-conditioned model gets FID, the floor,
per-class accuracy at one guidance scale and accuracy against guidance (with a plot).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from fundiff import DEFAULT_GUIDANCE, DEFAULT_SEED
from fundiff.cli.common import (
    add_precision_option,
    add_sampler_options,
    add_timestep_options,
    finite_float,
    nonneg_float_list,
    sampler_from_args,
    seed_int,
)
from fundiff.errors import FundiffError


def add_evaluate_options(p: argparse.ArgumentParser) -> None:
    """The options of `fundiff evaluate`."""
    from fundiff.cli.common import (
        add_device_threads as _add_common,
    )
    from fundiff.cli.common import (
        float_list as _float_list,
    )
    from fundiff.cli.common import (
        positive_int as _positive_int,
    )

    p.add_argument("--model", required=True, help="run folder (or shipped name) of a denoiser, time or class model")
    p.add_argument(
        "--n",
        type=_positive_int,
        default=1000,
        help="generated samples for FID (class models: N/10 per class, per guidance scale); test images for a denoiser",
    )
    p.add_argument(
        "--guidance",
        type=finite_float,
        default=None,
        help=f"class models: CFG scale for FID and per-class accuracy (default: {DEFAULT_GUIDANCE:g}; a distilled "
        "model: its own)",
    )
    p.add_argument(
        "--sweep",
        type=_float_list,
        default=None,
        help="class models: CFG scales of the accuracy sweep (default: 0,1,3,5,7)",
    )
    add_timestep_options(p)
    add_sampler_options(p)
    p.add_argument(
        "--classifier",
        default=None,
        help="classifier run folder or shipped name (default: runs/DATASET-classifier, then the shipped "
        "mnist-classifier, fashion-classifier or emoji-classifier; a text model is measured without one where "
        "there is none)",
    )
    p.add_argument(
        "--sigmas",
        type=nonneg_float_list,
        default=None,
        help="denoisers: noise levels (default: the write-up's 0,0.2,0.4,0.5,0.6,0.8,1.0)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=500, help="samples drawn per batch")
    add_precision_option(p)
    p.add_argument(
        "--seed", type=seed_int, default=DEFAULT_SEED, help="seed of sampling noise and of the reference subset"
    )
    p.add_argument(
        "--out",
        default=None,
        help="metrics JSON path; plots go beside it (default: RUN/evaluation.json; for a shipped model "
        "out/NAME/evaluation.json)",
    )
    _add_common(p, data=True)


def _find_classifier(name: str | None, dataset: str, device):
    from fundiff.backends.runs import shipped_names
    from fundiff.classify import load_classifier

    if name is None:
        local = Path("runs") / f"{dataset}-classifier"
        if local.is_dir():
            name = str(local)
        elif shipped := [
            n for n in (f"{dataset}-classifier", f"{dataset.split('-')[0]}-classifier") if n in shipped_names()
        ]:
            name = shipped[0]  # shipped as mnist-classifier / fashion-classifier
        else:
            raise FundiffError(
                f"no classifier for {dataset}: train one with `fundiff train classifier --dataset {dataset}` (writes "
                f"{local}) or pass --classifier"
            )
    clf, info = load_classifier(name, device=device)
    trained_on = info["config"].get("train", {}).get("dataset")
    if trained_on != dataset:
        raise FundiffError(
            f"classifier {name} was trained on {trained_on!r} but the model on {dataset!r}; pass a {dataset} classifier"
        )
    return clf, name, info


def evaluate_command(args: argparse.Namespace) -> None:
    """Measure a run (kind from its config.json), print a table and write the metrics JSON."""

    from fundiff.backends import runs
    from fundiff.checkpoints import load_config
    from fundiff.outputs import staged_file

    run_dir = runs.resolve(args.model)
    cfg = load_config(run_dir)
    kind = cfg.get("model", {}).get("kind") if isinstance(cfg.get("model"), dict) else None
    if kind not in ("denoiser", "time", "class"):
        raise FundiffError(f"{args.model} is a {kind!r} run; evaluate takes a denoiser, time or class model")
    dataset = runs.dataset_of(cfg)
    names = runs.class_names_of(cfg)
    text = "text" in cfg
    if text:
        _check_text_options(args)
    else:
        _check_options(args, kind, len(names))
    out = Path(args.out) if args.out else runs.default_output(args.model, "evaluation.json")
    if out.suffix.lower() != ".json":
        raise FundiffError(f"--out must be a .json path, got {args.out!r}")
    with staged_file(out, suffixes=(".json",)) as staged:  # checked before work; written whole or not at all
        if text:
            report = _evaluate_text(args, run_dir, staged)
        else:
            report = _evaluate(args, run_dir, cfg, kind, dataset, names, staged)
    if text:
        _print_text_report(report)
    else:
        _print_report(report, names)
    print(f"metrics in {out}")


def _evaluate(args, run_dir, cfg: dict, kind: str, dataset: str, names, staged) -> dict:
    """Measure the run, write the metrics JSON (and a class model's guidance plot) to ``staged.tmp``; the report."""
    from fundiff import data
    from fundiff.atomic import atomic_write_json
    from fundiff.backends import runs
    from fundiff.data import to_unit_float
    from fundiff.devices import resolve_device

    device = resolve_device(args.device)
    report: dict = {"model": str(args.model), "kind": kind, "dataset": dataset, "seed": args.seed}
    if kind != "denoiser":  # everything that can fail fast, before loading data and sampling
        from fundiff import timesteps as ts

        clf, clf_name, clf_info = _find_classifier(args.classifier, dataset, device)
        den = runs.load_denoiser(run_dir, device=device, precision=args.precision)
        timesteps = ts.for_model(den, steps=args.steps, stride=args.stride)
        sampler = sampler_from_args(args, den)  # --sampler, else the model's own (heun for a flow model)
    x_test, y_test = data.load_split(dataset, args.data_dir, train=False)
    x_train, _ = data.load_split(dataset, args.data_dir, train=True)
    if kind != "denoiser" and args.n > len(x_train):
        raise FundiffError(f"--n must be at most {len(x_train)} (the train images behind the FID floor), got {args.n}")

    if kind == "denoiser":
        n = min(args.n, len(x_test), len(x_train))
        _evaluate_denoiser(
            args, run_dir, cfg, report, to_unit_float(x_test[:n], device), to_unit_float(x_train[:n], device), device
        )
    else:
        from fundiff.metrics import FID

        print(f"features of the {len(x_test)} test images (FID's real set)...", file=sys.stderr)
        fid_to_test = FID(clf, to_unit_float(x_test, device))
        train = x_train.unsqueeze(1).to(device)  # uint8 until reference_fid takes its subset
        report |= {
            "classifier": clf_name,
            "classifier_test_accuracy": clf_info["test_accuracy"],
            "steps": len(timesteps),
            "sampler": sampler.name,
            **({"eta": sampler.eta} if hasattr(sampler, "eta") else {}),
            "objective": den.traits.objective,
            "precision": args.precision,
        }
        if kind == "time":
            _evaluate_time(args, den, sampler, clf, names, timesteps, fid_to_test, train, y_test, report, device)
        else:
            _evaluate_class(args, den, sampler, clf, names, timesteps, fid_to_test, train, report, staged, device)
    atomic_write_json(staged.tmp, report)
    return report


TEXT_PROMPTS = 50  # prompts of a text model's evaluation (prompt_eval.eval_prompts)


def _check_text_options(args) -> None:
    """A text model is measured by prompt fidelity and diversity (and, with an emoji classifier, in its features):
    the class and denoiser options do not apply."""
    foreign = [flag for flag, value in (("--sweep", args.sweep), ("--sigmas", args.sigmas)) if value is not None]
    if foreign:
        raise FundiffError(f"{', '.join(foreign)} do(es) not apply to a text model (measured by prompt fidelity)")
    if args.n < TEXT_PROMPTS:
        raise FundiffError(f"--n must be at least {TEXT_PROMPTS} for a text model (one sample per prompt)")


def _evaluate_text(args, run_dir, staged) -> dict:
    """Prompt fidelity and diversity over TEXT_PROMPTS prompts and the write-up's prompts (prompt_eval); with an
    emoji classifier (--classifier, else runs/emoji-classifier or the shipped one, else none) also the fidelity in
    its features and the FID of --n samples prompted by random training images' titles (prompt_eval.caption_fid)."""
    from fundiff import emoji, prompt_eval
    from fundiff import timesteps as ts
    from fundiff.atomic import atomic_write_json
    from fundiff.backends import runs
    from fundiff.devices import resolve_device

    device = resolve_device(args.device)
    den = runs.load_denoiser(run_dir, device=device, precision=args.precision)
    timesteps = ts.for_model(den, steps=args.steps, stride=args.stride)
    sampler = sampler_from_args(args, den)
    from fundiff.guidance import scale_for

    guidance = scale_for(den, args.guidance)
    from fundiff import data

    images, items = emoji.load(data.fetch("emoji", args.data_dir), resolution=den.image_size)
    run = dict(n=args.n // TEXT_PROMPTS, guidance=guidance, timesteps=timesteps, sampler=sampler, seed=args.seed,
               batch=args.batch_size)  # fmt: skip
    report = {"model": str(args.model), "kind": "text", "dataset": "emoji", "seed": args.seed,
              "steps": len(timesteps), "sampler": sampler.name, "precision": args.precision}  # fmt: skip
    clf = None
    try:
        clf, clf_name, _ = _find_classifier(args.classifier, "emoji", device)
        report["classifier"] = clf_name
    except FundiffError:
        if args.classifier is not None:
            raise
    prompts = prompt_eval.eval_prompts(items)
    report["eval_prompts"] = prompt_eval.prompt_fidelity(den, images, items, prompts, classifier=clf, **run)
    writeup = [(p, names) for p, names in prompt_eval.WRITEUP_TARGETS.items() if _knows(den, p)]
    if writeup:  # a model trained on some emoji only may know none of them
        report["writeup_prompts"] = prompt_eval.prompt_fidelity(den, images, items, writeup, **run)
    if clf is not None:
        report["fid"] = prompt_eval.caption_fid(den, clf, images, items, **{**run, "n": min(args.n, len(items))})
    atomic_write_json(staged.tmp, report)
    return report


def _knows(den, prompt: str) -> bool:
    """Whether the text model reads ``prompt`` (has a word of it)."""
    try:
        den.encode([prompt])
    except FundiffError:
        return False
    return True


def _print_text_report(r: dict) -> None:
    e, w = r["eval_prompts"], r.get("writeup_prompts")
    print(f"{r['model']}: {r['sampler']}, {r['steps']} steps, CFG {e['guidance']:g}, {e['samples_per_prompt']} "
          "samples per prompt")  # fmt: skip
    print(f"  prompt fidelity over {e['prompts']} prompts: {e['fidelity']:.1%}  diversity {e['diversity']:.2f}")
    if "fid" in r:
        f = r["fid"]
        print(f"  in {r['classifier']}'s features: prompt fidelity {e['fidelity_features']:.1%}; FID of {f['n']} "
              f"samples of training titles {f['fid']:.2f} (floor {f['fid_floor']:.2f})")  # fmt: skip
    if w is None:
        print("  the write-up's prompts: the model knows none of them")
        return
    print(f"  the write-up's prompts: fidelity {w['fidelity']:.1%}  diversity {w['diversity']:.2f}")
    for row in w["per_prompt"]:
        print(f"    {row['prompt']!r}: {row['hits']}/{e['samples_per_prompt']}  nearest {', '.join(row['nearest'])}")


def _check_options(args, kind: str, n_classes: int) -> None:
    """The evaluate options that do not apply to a model of ``kind``, or are out of range: one-line errors."""
    if kind != "class" and (args.guidance is not None or args.sweep is not None):
        raise FundiffError(
            f"--guidance and --sweep apply to class-conditioned models; {args.model} is a {kind!r} model"
        )
    if kind != "denoiser" and args.sigmas is not None:
        raise FundiffError(f"--sigmas applies to one-step denoisers; {args.model} is a {kind!r} model")
    if kind == "denoiser" and args.classifier is not None:
        raise FundiffError("--classifier does not apply to a one-step denoiser (it is measured by MSE/PSNR)")
    for s in [args.guidance or 0.0, *(args.sweep or ()), *(args.sigmas or ())]:
        if not math.isfinite(s):
            raise FundiffError(f"--guidance, --sweep and --sigmas take finite numbers, got {s}")
    if args.sweep == ():
        raise FundiffError("--sweep needs at least one scale, e.g. 0,1,3,5,7")
    if any(s < 0 for s in args.sigmas or ()):
        raise FundiffError("--sigmas must be >= 0")
    min_n = {"denoiser": 1, "time": 2, "class": n_classes}[kind]
    if args.n < min_n:
        raise FundiffError(
            f"--n must be at least {min_n} for a {kind!r} model"
            + (" (one sample per class)" if kind == "class" else " (FID needs 2 samples)" if kind == "time" else "")
        )


def _evaluate_time(args, den, sampler, clf, names, timesteps, fid_to_test, train, y_test, report, device) -> None:
    """FID, its floor and the class histogram of ``args.n`` unconditional samples, into ``report``."""
    import torch

    from fundiff.evaluation import draw_samples
    from fundiff.metrics import class_histogram, reference_fid

    print(f"sampling {args.n} images ({len(timesteps)} steps)...", file=sys.stderr)
    g = torch.Generator(device=device).manual_seed(args.seed)
    x = draw_samples(den, [""] * args.n, timesteps, generator=g, batch_size=args.batch_size, sampler=sampler)
    hist = class_histogram(clf, x, num_classes=len(names))
    test_frac = torch.bincount(y_test, minlength=len(names)).double() / len(y_test)
    report |= {
        "n": args.n,
        "fid": fid_to_test(x),
        "fid_floor": reference_fid(
            fid_to_test, train, n=args.n, generator=torch.Generator().manual_seed(args.seed + 1)
        ),
        "class_histogram": dict(zip(names, hist)),
        "class_fractions": {k: c / args.n for k, c in zip(names, hist)},
        "test_class_fractions": dict(zip(names, test_frac.tolist())),
    }


def _evaluate_denoiser(args, run_dir, cfg, report, x_test, x_train, device) -> None:
    import torch

    from fundiff.backends import runs
    from fundiff.evaluation import SWEEP_SIGMAS, denoise_sweep
    from fundiff.metrics import blur_baseline

    model, _ = runs.load(run_dir, device=device)
    sigmas = args.sigmas or SWEEP_SIGMAS
    rows, images = denoise_sweep(
        model,
        x_test,
        sigmas,
        generator=torch.Generator(device=device).manual_seed(args.seed),
        batch_size=args.batch_size,
    )
    # the blur is tuned on train images, then scored on the model's test images and noise
    noisy = {s: z for s, (z, _) in images.items()}
    blur_rows = blur_baseline(
        x_train, x_test, noisy, generator=torch.Generator(device=device).manual_seed(args.seed + 1)
    )
    report |= {
        "n": len(x_test),
        "trained_sigma": cfg.get("train", {}).get("sigma"),
        "rows": [
            {
                **r.__dict__,
                "blur_mse": b.mse,
                "blur_psnr": b.psnr,
                "blur_kernel": b.blur.kernel_size,
                "blur_sigma": b.blur.sigma,
            }
            for r, b in zip(rows, blur_rows)
        ],
    }


def _evaluate_class(args, den, sampler, clf, names, timesteps, fid_to_test, train, report, staged, device) -> None:
    import torch

    from fundiff.evaluation import GUIDANCE_SWEEP, guidance_sweep, plot_guidance_sweep
    from fundiff.guidance import scale_for
    from fundiff.metrics import reference_fid

    n_per_class = args.n // len(names)
    guidance = scale_for(den, args.guidance)
    sweep = tuple(args.sweep or GUIDANCE_SWEEP) if den.traits.guidance is None else (guidance,)  # a student: its own
    scales = sorted(set(sweep) | {guidance})
    n = n_per_class * len(names)
    print(
        f"sampling {n} images ({len(timesteps)} steps) at each guidance scale {', '.join(f'{s:g}' for s in scales)}...",
        file=sys.stderr,
    )
    g = torch.Generator(device=device).manual_seed(args.seed)
    results = {
        r.scale: r
        for r in guidance_sweep(
            den,
            clf,
            scales,
            timesteps,
            class_names=names,
            n_per_class=n_per_class,
            generator=g,
            fid=fid_to_test,
            batch_size=args.batch_size,
            sampler=sampler,
        )
    }
    main = results[float(guidance)]
    floor = reference_fid(fid_to_test, train, n=n, generator=torch.Generator().manual_seed(args.seed + 1))
    plot = staged.target.with_name(staged.target.stem + "_guidance.png")  # beside the JSON, written with it
    shown = [results[float(s)] for s in sorted(set(sweep))]
    plot_guidance_sweep(
        shown,
        staged.tmp.with_name(plot.name),
        class_names=names,
        fid_floor=floor,
        title=f"class accuracy and FID vs. guidance ({n} samples per scale, {len(timesteps)} steps)",
    )
    report |= {
        "n": n,
        "guidance": guidance,
        "fid": main.fid,
        "fid_floor": floor,
        "accuracy": main.accuracy.to_dict(names),
        "sweep": [{"guidance": r.scale, "fid": r.fid, **r.accuracy.to_dict(names)} for r in shown],
        "sweep_plot": str(plot),
    }


def _print_report(r: dict, names) -> None:
    print(f"{r['kind']} model {r['model']} ({r['dataset']})")
    if r["kind"] == "denoiser":
        print(f"{'sigma':>6} {'MSE':>9} {'PSNR dB':>8} {'noisy MSE':>10} {'blur MSE':>9} {'blur dB':>8}  best blur")
        for row in r["rows"]:
            print(
                f"{row['sigma']:>6.2f} {row['mse']:>9.5f} {row['psnr']:>8.2f} {row['mse_noisy']:>10.5f} "
                f"{row['blur_mse']:>9.5f} {row['blur_psnr']:>8.2f}"
                f"  k={row['blur_kernel']} s={row['blur_sigma']:g}"
            )
        return
    acc = r["classifier_test_accuracy"]
    print(
        f"classifier {r['classifier']} (test accuracy {'unknown' if acc is None else f'{acc:.4f}'}); {r['n']} samples, "
        f"{r['steps']} steps, sampler {r['sampler']}" + (f" (eta {r['eta']:g})" if "eta" in r else "")
    )
    print(f"FID {r['fid']:.3f}   (floor: train vs test at the same count {r['fid_floor']:.3f})")
    if r["kind"] == "time":
        print(f"{'class':>12} {'samples':>8} {'share':>6} {'test':>6}")
        for k in names:
            print(
                f"{k:>12} {r['class_histogram'][k]:>8} {r['class_fractions'][k]:>6.3f} "
                f"{r['test_class_fractions'][k]:>6.3f}"
            )
        return
    print(f"accuracy at guidance {r['guidance']:g}: {r['accuracy']['overall']:.4f}")
    print(f"{'guidance':>8} " + " ".join(f"{k[:6]:>6}" for k in names) + f" {'all':>6} {'FID':>8}")
    for row in r["sweep"]:
        print(
            f"{row['guidance']:>8g} "
            + " ".join(f"{row['per_class'][k]:>6.3f}" for k in names)
            + f" {row['overall']:>6.3f} {row['fid']:>8.3f}"
        )
    print(f"plot: {r['sweep_plot']}")


def register(subparsers) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``evaluate`` to ``subparsers``; return {command name: handler(args)}.

    (The classifier is trained by ``fundiff train classifier``, which routes to :func:`train_classifier_command`.)
    """
    from fundiff.cli.common import Formatter as _Formatter

    p = subparsers.add_parser(
        "evaluate",
        help="measure a model: FID, class accuracy vs guidance, class histogram, or denoiser MSE/PSNR vs a blur "
        "baseline",
        formatter_class=_Formatter,
        description=__doc__.split("\n\n", 1)[1],
    )
    add_evaluate_options(p)
    return {"evaluate": evaluate_command}


__all__ = ["register", "add_evaluate_options", "evaluate_command"]
