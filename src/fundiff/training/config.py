"""The UNet training config, its presets, and the noise schedule a config trains on.

:class:`TrainConfig` is everything that determines a training run (saved to config.json).
Each field's check, help and ``fundiff train`` flag are in its metadata (training.options):
``fundiff train`` builds its flags from them, and :func:`fundiff.training.options.validate`
checks a config against them. ``PRESETS`` are named recipes per model kind;
:func:`preset_config` applies flags on top of one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fundiff import DEFAULT_SEED, flow
from fundiff.data import DATASETS
from fundiff.denoisers import OBJECTIVES
from fundiff.devices import PRECISIONS
from fundiff.errors import FundiffError
from fundiff.models.unet import MODEL_KINDS, TIME_CONDITIONINGS
from fundiff.schedules import BETA_SCHEDULES, NoiseSchedule
from fundiff.text import DESIGNS as TEXT_DESIGNS
from fundiff.training.options import (
    NONNEG_FLOAT,
    NONNEG_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    UNIT_FLOAT,
    Choice,
    IntList,
    Range,
    Switch,
    option,
    validate,
)

LR_SCHEDULES = ("exponential", "constant", "cosine")
LOSS_WEIGHTS = ("none", "min-snr")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; saved to config.json.

    The ``help`` of each field's Option is also its ``fundiff train --help`` text.
    """

    kind: str = option(Choice(MODEL_KINDS), "the model: denoiser, time or class", label="model kind")
    preset: str = "paper"  # which preset the values came from (informational)
    dataset: str = option(Choice(DATASETS), "training data (train split only)", default="mnist", flag="--dataset")
    text: str = option(
        Choice(("none", *TEXT_DESIGNS)),
        "class kind on emoji: the text encoder of the prompts (fundiff.text): words (bag of words) or words+names "
        "(and a dimension per emoji name); none: one-hot classes",
        default="none",
        flag="--text",
    )
    name_share: float = option(
        UNIT_FLOAT,
        "text model: the probability that a training step's text of an image is one of its emoji's names (the rest: "
        "any of its texts, names and keywords alike); 0: every text equally likely",
        default=0.0,
        flag="--name-share",
    )
    train_images: int | None = option(
        POSITIVE_INT,
        "train on the first N images of the train split only (quick experiments; default: all of it)",
        default=None,
        flag="--train-images",
        optional=True,
    )
    hidden: int = option(POSITIVE_INT, "UNet hidden size D", default=64, flag="--hidden")
    film: bool = option(
        Switch(),
        "time/class UNet: also FiLM every conv block's output by an embedding of (t, c) (Perez et al. 2018, as in "
        "ADM), not only the write-up's two conditioning points",
        default=False,
        flag="--film",
    )
    class_map: int = option(
        NONNEG_INT,
        "class UNet: K channels of a learned spatial map of the class vector (a Linear from c to K maps of the "
        "bottleneck's side, added at u0 and, upsampled, at u1): each word and name draws its own coarse layout; "
        "0: none (the write-up's)",
        default=0,
        flag="--class-map",
    )
    patch: int = option(
        POSITIVE_INT,
        "UNet on p x p pixel patches (space-to-depth; 1: on pixels, the write-up's): a p^2 times smaller grid buys a "
        "wider --hidden",
        default=1,
        flag="--patch",
    )
    batch_size: int = option(
        POSITIVE_INT, "global batch size (split across DDP ranks)", default=128, flag="--batch-size"
    )
    epochs: int = option(POSITIVE_INT, "passes over the train split", default=20, flag="--epochs")
    lr: float = option(POSITIVE_FLOAT, "Adam learning rate", default=1e-3, flag="--lr")
    lr_schedule: str = option(
        Choice(LR_SCHEDULES),
        "LR schedule: exponential (the write-up's ExponentialLR, gamma = 0.1 ** (1 / epochs) per epoch), "
        "constant, or cosine (per step, to 0 at the last)",
        default="exponential",
        flag="--lr-schedule",
    )
    warmup_steps: int = option(
        NONNEG_INT, "linear LR warm-up steps (on top of lr_schedule)", default=0, flag="--warmup-steps"
    )
    sigma: float = option(NONNEG_FLOAT, "training noise level of the one-step denoiser", default=0.5, flag="--sigma")
    pure_noise: bool = option(
        Switch(),
        "denoiser: train on inputs that are pure noise z = eps, no image (the course's Part 1.2.3): under an MSE "
        "loss the best constant output is the training set's mean image",
        default=False,
        flag="--pure-noise",
    )
    T: int = option(
        Range(int, "an integer >= 2", low=2),
        "diffusion steps (time / class kinds), or flow grid points for sampling",
        default=300,
        flag="--T",
    )
    beta_schedule: str = option(
        Choice(BETA_SCHEDULES),
        "DDPM noise schedule (linear: the write-up's; cosine: Nichol & Dhariwal 2021)",
        default="linear",
        flag="--beta-schedule",
    )
    objective: str = option(
        Choice(OBJECTIVES),
        "what a time/class UNet learns: eps (write-up, DDPM), v (v-prediction, Salimans & Ho 2022), flow (flow "
        "matching: velocity on the straight noise-data path; sample with --sampler heun or euler), course-flow "
        "(the course's flow edition: time from noise to data, target x_data - x_noise, sampled from pure noise)",
        default="eps",
        flag="--objective",
    )
    time_conditioning: str = option(
        Choice(TIME_CONDITIONINGS),
        "time model: additive (the write-up: unflatten + t1, up1 + t2) or multiplicative (the course's flow "
        "edition: unflatten * t1, up1 * t2)",
        default="additive",
        flag="--time-conditioning",
    )
    loss_weight: str = option(
        Choice(LOSS_WEIGHTS),
        "eps/v loss weighting: none or min-snr (Hang et al. 2023, gamma 5)",
        default="none",
        flag="--loss-weight",
    )
    flow_times: str = option(
        Choice(flow.TIME_LAWS),
        "flow matching's training times",
        default="uniform",
        flag="--flow-times",
        label="flow time law",
    )
    low_times: float = option(
        UNIT_FLOAT,
        "flow objective: this share of the training times uniform in (0, 0.1), the nearly clean end that "
        "logit-normal times almost never reach (a short fine-tune with 0.25 removed the shipped MNIST models' "
        "background grain: README, Grain)",
        default=0.0,
        flag="--low-times",
    )
    p_uncond: float = option(
        UNIT_FLOAT, "probability of dropping the class vector (class kind; Ho & Salimans 2022)", default=0.1
    )
    ema_decay: float = option(
        UNIT_FLOAT,
        "EMA decay of the weights (e.g. 0.999; warmed up as (1 + step) / (10 + step), but not in a fine-tune, "
        "--init-from); 0 turns it off",
        default=0.0,
        flag="--ema",
    )
    max_steps: int | None = option(
        POSITIVE_INT,
        "stop after this many optimizer steps in total (short runs)",
        default=None,
        flag="--max-steps",
        optional=True,
    )
    seed: int = option(
        SEED, "seed of data order, noise, init and grids", default=DEFAULT_SEED, flag="--seed", from_preset=False
    )
    precision: str = option(
        Choice(PRECISIONS),
        "auto: the faster of fp32 / bf16 autocast (and channels-last), timed once per machine and cached",
        default="auto",
        flag="--precision",
    )
    channels_last: bool | None = option(
        Switch(),
        "NHWC memory format (default: timed with --precision auto, else on)",
        default=None,
        flag="--channels-last",
    )
    sample_epochs: tuple[int, ...] = option(
        IntList(), "write sample grids after these epochs, e.g. 5,20", default=(), flag="--sample-epochs"
    )
    save_every: int = option(
        NONNEG_INT,
        "checkpoint every N steps (and at every epoch end); 0: at epoch ends only",
        default=500,
        flag="--save-every",
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.pure_noise and self.kind != "denoiser":
            raise FundiffError("--pure-noise trains the one-step denoiser; drop it for time and class models")
        if (self.text != "none") != (self.dataset == "emoji" and self.kind == "class"):
            raise FundiffError(
                "a class model on emoji needs --text words or words+names (texts are its classes); other models "
                "take --text none"
            )
        if self.dataset == "emoji" and self.kind == "denoiser":
            raise FundiffError("the one-step denoiser trains on mnist or fashion-mnist; drop --dataset emoji")
        if self.low_times and self.objective != "flow":
            raise FundiffError("--low-times adds nearly clean flow times to --objective flow; drop it otherwise")
        if self.loss_weight != "none" and flow.is_flow(self.objective):
            raise FundiffError("min-snr weighting applies to the eps and v objectives, not to flow; drop --loss-weight")
        if self.time_conditioning != "additive" and self.kind != "time":
            raise FundiffError("--time-conditioning multiplicative is the time model's; drop it for other kinds")
        if self.name_share and self.text != "words+names":
            raise FundiffError("--name-share weights the name texts of a --text words+names model; drop it otherwise")
        if self.class_map and self.kind != "class":
            raise FundiffError("--class-map maps a class model's class vector; drop it for other kinds")
        if self.film and self.kind == "denoiser":
            raise FundiffError("--film conditions on the time (and class): drop it for the one-step denoiser")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_epochs"] = list(self.sample_epochs)
        return d


# The write-up's hyperparameters ("paper"); "quick" is fundiff's fast-CPU recipe; "tiny" is for smoke tests.
# The time- and class-conditioned UNets share their recipe in each preset.
_PAPER_DIFFUSION = dict(hidden=64, batch_size=128, epochs=20, lr=1e-3, lr_schedule="exponential", precision="fp32")
_QUICK_DIFFUSION = dict(
    hidden=64, batch_size=256, epochs=3, lr=2e-3, lr_schedule="cosine", warmup_steps=100, ema_decay=0.995
)
# Flow matching (rectified flow) on the quick recipe, 10 epochs: the shipped models' recipe
# (benchmarks/ablate.py: at equal epochs it beats DDPM on FID and class balance; README "Better models").
_FLOW_DIFFUSION = dict(_QUICK_DIFFUSION, objective="flow", flow_times="logit-normal", T=1000, epochs=10)
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "denoiser": dict(
            hidden=128,
            batch_size=256,
            epochs=5,
            lr=1e-4,
            lr_schedule="constant",
            precision="fp32",
            sample_epochs=(1, 5),
        ),
        "time": dict(_PAPER_DIFFUSION, sample_epochs=(5, 20)),
        "class": dict(_PAPER_DIFFUSION, sample_epochs=(5, 20)),
    },
    "quick": {
        "denoiser": dict(
            hidden=64, batch_size=256, epochs=1, lr=1e-3, lr_schedule="cosine", warmup_steps=20, sample_epochs=(1,)
        ),
        "time": dict(_QUICK_DIFFUSION, sample_epochs=(3,)),
        "class": dict(_QUICK_DIFFUSION, sample_epochs=(3,)),
    },
    "flow": {
        "denoiser": dict(
            hidden=64, batch_size=256, epochs=1, lr=1e-3, lr_schedule="cosine", warmup_steps=20, sample_epochs=(1,)
        ),
        "time": dict(_FLOW_DIFFUSION, sample_epochs=(10,)),
        "class": dict(_FLOW_DIFFUSION, sample_epochs=(10,)),
    },
    # fundiff's text-to-image model (README "Text to image on a CPU"): the flow recipe on 32x32 colour emoji with their
    # texts (words+names), a 16-channel class map and FiLM in every block, name texts drawn 60% of the time; D = 64,
    # batch 128, 36 epochs: ~10 min on 2 cores with AMX, ~25 min without (bf16); ablation in the README
    "emoji": {
        "class": dict(
            _FLOW_DIFFUSION,
            dataset="emoji",
            text="words+names",
            film=True,
            class_map=16,
            name_share=0.6,
            batch_size=128,
            epochs=36,
            warmup_steps=100,
            sample_epochs=(12, 36),
            save_every=200,
        ),
    },
    # The course's flow-matching edition exactly (CS180 spring/fall 2025, Part B): D = 64, batch 64, Adam 1e-2 with
    # ExponentialLR(0.1 ** (1 / epochs)), 10 epochs, p_uncond 0.1, t ~ U[0, 1] from the noise to the data; sampled by
    # Euler steps of 1/T from pure noise, T = 50 for the time model, 300 for the class model (flow.py)
    "course-flow": {
        kind: dict(
            hidden=64,
            batch_size=64,
            epochs=10,
            lr=1e-2,
            lr_schedule="exponential",
            objective="course-flow",
            flow_times="uniform",
            p_uncond=0.1,
            sample_epochs=(1, 5, 10),
            **extra,
        )
        for kind, extra in (("time", dict(T=50, time_conditioning="multiplicative")), ("class", dict(T=300)))
    },
    "tiny": {
        k: dict(hidden=8, batch_size=64, epochs=1, lr=1e-3, lr_schedule="constant", max_steps=20, save_every=10)
        for k in MODEL_KINDS
    },
}


def preset_config(preset: str, kind: str, **overrides) -> TrainConfig:
    """The TrainConfig of ``preset`` for model ``kind``, with non-None ``overrides`` applied."""
    if preset not in PRESETS:
        raise FundiffError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if kind not in MODEL_KINDS:
        raise FundiffError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if kind not in PRESETS[preset]:
        raise FundiffError(f"preset {preset!r} trains {', '.join(PRESETS[preset])} models, not {kind!r}")
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise FundiffError(f"unknown training option(s) {', '.join(sorted(unknown))}")
    values = {**PRESETS[preset][kind], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(kind=kind, preset=preset, **values)


def config_from_dict(saved: dict) -> TrainConfig:
    """The TrainConfig of a run from its config.json's "train" dict (keys of an older or newer fundiff that
    TrainConfig lacks are left out; fields absent from it take their defaults)."""
    values = {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__}
    values["sample_epochs"] = tuple(values.get("sample_epochs", ()))
    return TrainConfig(**values)


def schedule_of_config(cfg: TrainConfig) -> NoiseSchedule:
    """The discrete schedule a time/class run samples on: its beta schedule, or for the flow
    objective the VP-equivalent grid of T flow times (flow.schedule; course-flow: the grid that reaches pure noise)."""
    if flow.is_flow(cfg.objective):
        return flow.schedule(cfg.T, endpoint=cfg.objective == "course-flow")
    return NoiseSchedule.from_name(cfg.beta_schedule, cfg.T)


__all__ = [
    "TrainConfig", "PRESETS", "LR_SCHEDULES", "LOSS_WEIGHTS", "preset_config", "config_from_dict", "schedule_of_config",
]  # fmt: skip
