"""``fundiff train``: the write-up's Part B models (denoiser, time, class) and the grading classifier.

``fundiff train classifier`` routes to :func:`train_classifier_command`.
The handler receives the command line as ``args.argv`` (None: ``sys.argv[1:]``) and records it
in the run's config.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from fundiff.cli.common import Formatter as _Formatter
from fundiff.cli.common import add_device_threads as _add_common
from fundiff.cli.common import int_list as _int_list
from fundiff.cli.common import number as _number
from fundiff.errors import FundiffError


def register(sub) -> dict[str, Callable[[argparse.Namespace], None]]:
    """Add ``train`` to the subparsers ``sub``; returns {command name: handler(args)}."""
    from fundiff.training import PRESETS

    p = sub.add_parser(
        "train",
        help="train a one-step denoiser, a time- or a class-conditioned UNet",
        formatter_class=_Formatter,
        description="Train one of the write-up's Part B models. --preset paper is the write-up's recipe; flags\n"
        "override the preset's values (with --resume: the run's; with --init-from: the base model's).\n"
        "`fundiff train classifier` takes --dataset, --epochs, --batch-size, --lr, --max-steps, --precision and\n"
        "--seed.",
    )
    p.add_argument(
        "kind",
        choices=("denoiser", "time", "class", "classifier"),
        help="denoiser: one-step (sigma=0.5); time: eps(x_t,t) (or --objective v / flow); class: eps(x_t,t,c) with "
        "CFG dropout; classifier: "
        "the CNN that grades samples (`fundiff evaluate`)",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESETS),
        help="paper (default): the write-up exactly (DDPM, fp32); quick: fast CPU DDPM recipe (3 epochs); flow: "
        "flow matching, 10 epochs, the shipped models' recipe (~30 min on 2 cores); emoji: the text-to-image model "
        "on the emoji (class only; fetches the emoji from npm; ~25 min on 2 cores); tiny: smoke test",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run folder (default: runs/DATASET-KIND-PRESET; classifier: runs/DATASET-classifier)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="fine-tune: start from this trained time or class model (a shipped name or run folder; its EMA "
        "weights) and its training config, which the flags override; not with --preset. The shipped mnist-class and "
        "mnist-time: --epochs 1 --lr 2e-4 --lr-schedule constant --warmup-steps 0 --ema 0.99 --low-times 0.25 "
        "(--seed 3 and 1; README, Grain)",
    )
    _add_config_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p, data=True)
    _register_distill(sub)
    return {"train": _handle_train, "distill": _handle_distill}


def _register_distill(sub) -> None:
    from fundiff.training.distill import DistillConfig

    d = DistillConfig()
    p = sub.add_parser(
        "distill",
        help="distill a class or time model into a few-step student (reflow on its own samples)",
        formatter_class=_Formatter,
        description="Distill a trained class model into a student that samples in --steps steps with CFG built in\n"
        "(fundiff.training.distill): the teacher samples --pairs images at --guidance, then the student, started\n"
        "from the teacher's weights, learns the straight path from each starting noise to its sample (reflow).\n"
        "A time model distills the same way, its pairs unconditional (no --guidance).",
    )
    p.add_argument("--teacher", default=d.teacher, help="a shipped class or time model, or a run folder")
    p.add_argument("--out", default=None, help="run folder (default: runs/TEACHER-fast)")
    p.add_argument("--resume", action="store_true", help="continue the distillation in --out where it stopped")
    p.add_argument("--guidance", type=_number(float, low=1), default=None,
                   help=f"the CFG scale built in (class models; default {d.guidance:g})")  # fmt: skip
    p.add_argument("--pairs", type=_number(int, low=1), default=d.pairs, help="teacher samples to learn from")
    p.add_argument("--null-share", type=_number(float, low=0, below=1), default=d.null_share,
                   help="the share of unconditional pairs (the null prompt)")  # fmt: skip
    p.add_argument("--teacher-sampler", default=d.teacher_sampler, help="the teacher's sampler for the pairs")
    p.add_argument("--teacher-steps", type=_number(int, low=1), default=d.teacher_steps, help="its steps")
    p.add_argument("--steps", type=_number(int, low=1), default=d.steps, help="the student's default sampling steps")
    p.add_argument("--time-shift", type=_number(float, above=0), default=d.time_shift,
                   help="its timesteps' shift toward the clean end (timesteps.shifted; 1: evenly spaced)")  # fmt: skip
    p.add_argument("--epochs", type=_number(int, low=1), default=d.epochs, help="epochs over the pairs")
    p.add_argument("--lr", type=_number(float, above=0), default=d.lr, help="Adam learning rate (constant)")
    p.add_argument("--batch-size", type=_number(int, low=1), default=d.batch_size, help="pairs per step")
    p.add_argument("--ema-decay", type=_number(float, low=0, below=1), default=d.ema_decay, help="EMA decay")
    p.add_argument("--seed", type=_number(int, low=0), default=d.seed, help="the pairs' noise and the training's")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_common(p)


def _handle_distill(args: argparse.Namespace) -> None:
    from fundiff import provenance, samplers
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config, read_json
    from fundiff.devices import resolve_device
    from fundiff.outputs import check_folder
    from fundiff.training.distill import DistillConfig, check_teacher, distill, guidance_for

    samplers.get_sampler(args.teacher_sampler)  # an unknown sampler: the one-line error before any work
    out = Path(args.out or f"runs/{Path(str(args.teacher)).name}-fast")
    check_folder(out)
    device = resolve_device(args.device)
    teacher = runs.load_denoiser(args.teacher, device=device, precision="auto")
    check_teacher(teacher, args.teacher)
    cfg = DistillConfig(
        teacher=args.teacher, guidance=guidance_for(teacher, args.guidance), pairs=args.pairs,
        null_share=args.null_share, teacher_sampler=args.teacher_sampler, teacher_steps=args.teacher_steps,
        steps=args.steps, time_shift=args.time_shift,
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, ema_decay=args.ema_decay, seed=args.seed,
    )  # fmt: skip
    argv = getattr(args, "argv", None)
    result = distill(
        cfg,
        out,
        teacher,
        load_config(runs.resolve(args.teacher)).get("train", {}),
        device=device,
        resume=args.resume,
        progress=not args.no_progress,
        extra_config={
            **provenance.run_info("auto", device),
            "command": "fundiff " + provenance.portable_command(sys.argv[1:] if argv is None else argv),
        },
    )
    losses = read_json(out / "state.json")["losses"]
    built_in = f", CFG s={cfg.guidance:g} built in" if teacher.kind == "class" else ""
    print(
        f"distilled {cfg.teacher} into {out} ({cfg.steps} step(s){built_in}): step "
        f"{result.step} in {result.wall_s:.1f} s of training; final loss {losses[-1]:.4f}"
    )


def _classifier_only_options() -> list:
    """(field, Option) of the ClassifierTrainConfig flags that TrainConfig lacks (such as --noise)."""
    from fundiff.training import ClassifierTrainConfig, TrainConfig
    from fundiff.training.options import options_of

    taken = {opt.flag for _, opt in options_of(TrainConfig)}
    return [(f, opt) for f, opt in options_of(ClassifierTrainConfig) if opt.flag not in taken | {None}]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field whose metadata names one (fundiff.training.options.Option), then the
    classifier's own (ClassifierTrainConfig's flags that TrainConfig lacks, such as --noise; None unless given).

    The Option gives the flag's check (a Range becomes the argparse type through cli.common.number,
    a Choice its choices), its help and its default: None for a value a preset (or, with --resume,
    the run) gives, else the field's own default (--dataset, --seed).
    """
    from fundiff.training import TrainConfig
    from fundiff.training.options import Choice, IntList, Range, options_of

    unet = [(f, opt, False) for f, opt in options_of(TrainConfig) if opt.flag is not None]
    for f, opt, classifier_only in unet + [(f, opt, True) for f, opt in _classifier_only_options()]:
        kw: dict = {"dest": f.name, "default": None if opt.from_preset or classifier_only else f.default}
        kw["help"] = ("classifier: " if classifier_only else "") + opt.help
        kw["help"] += _preset_default(f.name, f.default) if opt.from_preset and not classifier_only else ""
        rule = opt.allowed
        if isinstance(rule, Range):
            kw["type"] = _number(
                rule.type, low=rule.low, high=rule.high, above=rule.above, below=rule.below, what=rule.what
            )
        elif isinstance(rule, Choice):
            kw["choices"] = rule.values
        elif isinstance(rule, IntList):
            kw["type"] = _int_list
        else:  # Switch: --flag / --no-flag, None when neither is given
            kw["action"] = argparse.BooleanOptionalAction
        p.add_argument(opt.flag, **kw)


def _preset_default(name: str, default) -> str:
    """How the help of a preset-overriding flag states its default: the preset's where one sets the
    field, else the field's own default (unsaid for None / (): the help says what happens then)."""
    from fundiff.training import PRESETS

    recipes = [values for kinds in PRESETS.values() for values in kinds.values()]
    if all(name in values for values in recipes):
        return " (default: the preset's)"
    fallback = "" if default is None or default == () else str(default)
    if any(name in values for values in recipes):
        return f" (default: the preset's, else {fallback})" if fallback else " (default: the preset's, if it sets one)"
    return f" (default: {fallback})" if fallback else ""


def _handle_train(args: argparse.Namespace) -> None:
    _cmd_train(args, getattr(args, "argv", None))


def _train_config(args: argparse.Namespace, out: Path):
    """The TrainConfig of a new run (preset + flags), of a fine-tune (its base's config + flags: training.finetune)
    or of the run in ``out`` to resume (its config + flags)."""
    from fundiff import training
    from fundiff.checkpoints import load_config
    from fundiff.training.options import options_of

    flags = [(f.name, opt.from_preset) for f, opt in options_of(training.TrainConfig) if opt.flag is not None]
    overrides = {name: vars(args)[name] for name, from_preset in flags if from_preset}
    own = {name: vars(args)[name] for name, from_preset in flags if not from_preset}  # --seed
    if args.init_from:
        from fundiff.backends import runs
        from fundiff.training.finetune import finetune_config

        base = load_config(runs.resolve(args.init_from))
        return finetune_config(base, args.kind, overrides | own, name=args.init_from)
    if not args.resume:
        return training.preset_config(args.preset, args.kind, **own, **overrides)
    saved = load_config(out)["train"]
    if saved["kind"] != args.kind:
        raise FundiffError(f"{out} holds a {saved['kind']!r} run, not {args.kind!r}")
    return replace(training.config_from_dict(saved), **{k: v for k, v in overrides.items() if v is not None})


def _cmd_train(args, argv: list[str] | None = None) -> None:
    from fundiff import data, provenance, training
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config
    from fundiff.devices import resolve_device
    from fundiff.outputs import check_folder

    if args.kind == "classifier":
        if args.preset is not None:
            raise FundiffError(
                "--preset does not apply to a classifier; drop it "
                "(see `fundiff train classifier --help` for its options)"
            )
        return train_classifier_command(args, argv)
    foreign = [opt.flag for f, opt in _classifier_only_options() if getattr(args, f.name, None) is not None]
    if foreign:
        raise FundiffError(f"{', '.join(foreign)} appl(ies) to `fundiff train classifier` only; drop it here")
    if args.init_from and args.preset:
        raise FundiffError("--init-from takes its base model's recipe (flags override it); drop --preset")
    if args.init_from and args.resume:
        raise FundiffError("--resume continues a fine-tune from its own record; drop --init-from")
    args.preset = args.preset or "paper"
    if args.kind not in training.PRESETS[args.preset]:
        training.preset_config(args.preset, args.kind)  # the one-line error naming the kinds it trains
    dataset = args.dataset or training.PRESETS[args.preset][args.kind].get("dataset", "mnist")
    tuned = f"runs/{Path(str(args.init_from)).name}-tuned" if args.init_from else None
    out = Path(args.out or tuned or f"runs/{dataset}-{args.kind}-{args.preset}")
    check_folder(out)  # before any work; a failure later leaves the last complete checkpoint (training.train)
    cfg = _train_config(args, out)
    device = resolve_device(args.device)
    from fundiff.training.figures import epoch_figures
    from fundiff.training.finetune import init_record, init_weights
    from fundiff.training.inputs import training_inputs

    # a fine-tune starts from its base's weights, its EMA from them too, with no warm-up; on --resume its record
    # names the base, needed only when it stopped before its first checkpoint (it starts again at step 0 from there)
    recorded = load_config(out).get("init", {}).get("model") if args.resume else None
    base = args.init_from or (recorded if not (out / "state.json").exists() else None)
    init, base_config = init_weights(runs.resolve(base)) if base else (None, {})
    split, text = training_inputs(cfg, args.data_dir)
    class_names = data.CLASS_NAMES.get(cfg.dataset, ())
    result = training.train(
        cfg,
        out,
        data=split,
        text=text,
        device=device,
        resume=args.resume,
        progress=not args.no_progress,
        on_epoch_end=epoch_figures(cfg, device, class_names, args.data_dir, text[0] if text else None),
        init=init,
        ema_warmup=not (args.init_from or recorded),
        extra_config={
            **provenance.run_info(cfg.precision, device),
            "command": "fundiff " + provenance.portable_command(sys.argv[1:] if argv is None else argv),
            **({"init": init_record(args.init_from, base_config)} if args.init_from else {}),
        },
    )
    if int(os.environ.get("RANK", "0")) == 0:
        from fundiff import io
        from fundiff.checkpoints import read_json

        losses = read_json(out / "state.json")["losses"]
        io.plot_loss(losses, out / "loss.png", title=f"{cfg.kind} UNet training loss ({cfg.dataset})")
        print(
            f"trained {cfg.kind} to step {result.step} in {result.wall_s:.1f} s ({result.images_per_s:.0f} images/s); "
            f"final loss {losses[-1]:.4f}; run folder {out}"
        )


def train_classifier_command(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    """Train the evaluation classifier from the parsed options of `fundiff train classifier`.

    Options left None (as `fundiff train` leaves its overrides) take ClassifierTrainConfig's defaults.
    ``argv`` (default sys.argv[1:]) is recorded in config.json as the command that trained it.
    """
    from fundiff import data
    from fundiff.devices import resolve_device
    from fundiff.outputs import check_folder
    from fundiff.provenance import portable_command, run_info
    from fundiff.training import ClassifierTrainConfig, TrainConfig, train_classifier
    from fundiff.training.options import options_of

    given = vars(args)
    own = [f.name for f, opt in options_of(ClassifierTrainConfig) if opt.flag is not None]
    # the UNet's flags a classifier has no field for (and --resume / --init-from: a classifier trains afresh)
    foreign = [flag for flag, name in (("--resume", "resume"), ("--init-from", "init_from")) if given.get(name)]
    foreign += [
        opt.flag
        for f, opt in options_of(TrainConfig)
        if opt.flag is not None and f.name not in own and given.get(f.name) is not None
    ]
    if foreign:
        one = len(foreign) == 1
        raise FundiffError(
            f"{', '.join(foreign)} {'does' if one else 'do'} not apply to a classifier; drop {'it' if one else 'them'}"
        )
    cfg = ClassifierTrainConfig(**{k: given[k] for k in own if given.get(k) is not None})
    out = Path(args.out or f"runs/{cfg.dataset}-classifier")
    check_folder(out)  # before any work
    device = resolve_device(given.get("device"))
    model_config = None
    if cfg.dataset == "emoji":  # one class per emoji; no test split: scored on its own clean images
        from fundiff import emoji
        from fundiff.models.classifier import ClassifierConfig

        images, items = emoji.load(data.fetch("emoji", given.get("data_dir")))
        labels, names = emoji.identities(items)
        train_split = test_split = (images, labels)
        model_config = ClassifierConfig(in_channels=3, image_size=images.shape[-1], num_classes=len(names))
    else:
        train_split = data.load_split(cfg.dataset, given.get("data_dir"), train=True)
        test_split = data.load_split(cfg.dataset, given.get("data_dir"), train=False)
        names = data.CLASS_NAMES[cfg.dataset]
    command = "fundiff " + portable_command(sys.argv[1:] if argv is None else argv)
    progress = not given.get("no_progress", False)
    result = train_classifier(
        cfg, out, data=train_split, test_data=test_split, device=device, progress=progress, model_config=model_config,
        extra_config={**run_info(cfg.precision, device), "command": command},
    )  # fmt: skip
    worst = min(range(len(result.test_accuracy_per_class)), key=lambda k: result.test_accuracy_per_class[k])
    print(
        f"trained the {cfg.dataset} classifier ({result.step} steps, {result.wall_s:.0f} s): "
        f"{'accuracy on its own clean images' if cfg.dataset == 'emoji' else 'test accuracy'} "
        f"{result.test_accuracy:.4f} "
        f"(worst class {names[worst]}: {result.test_accuracy_per_class[worst]:.4f}); run folder {out}"
    )
