"""What a Denoiser declares about itself beyond the math, and the technique defaults that follow from it.

:class:`ModelTraits` is every Denoiser's ``traits``: its default sampler, objective, dataset, technique defaults,
arithmetic and pipeline timesteps. :class:`TechniqueDefaults` holds a model family's choices for the Part A
techniques where the write-up's depend on the model (prompts, the hybrid's filters); :func:`defaults_for` picks
a model's: its own (DeepFloyd IF's), else its dataset's (:data:`DATASET_DEFAULTS`), else :data:`DIGIT_DEFAULTS`.
This module lies below :mod:`fundiff.techniques`, so a backend declares its own without importing the
application layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

DEFAULT_SAMPLER = "ddpm"  # the sampler of a model that names no other (samplers.SAMPLERS)


@dataclass(frozen=True)
class TechniqueDefaults:
    """A model family's defaults for the Part A commands, where the write-up's choices depend on the model.

    A denoiser may carry its own in ``traits.technique_defaults`` (DeepFloyd IF: the write-up's prompts,
    kernel 33); :func:`defaults_for` falls back to its dataset's, else :data:`DIGIT_DEFAULTS`
    (fundiff's 28x28 models).
    """

    prompt: str = ""  # the generic prompt of denoise / sdedit / inpaint (the write-up's "a high quality photo")
    anagram_prompts: tuple[str, ...] = ("6", "9")
    anagram_views: tuple[str, ...] = ("rot180",)  # views of prompts 2.. (the first is seen as is)
    hybrid_prompts: tuple[str, str] = ("0", "1")  # (seen from afar: low frequencies, up close: high)
    hybrid_kernel_size: int = 9  # 28x28 digits: sigma 1 lets the low prompt win, 2-3 gives neither
    hybrid_sigma: float = 1.5
    # three-prompt hybrids' mid filter G_mid (the mid band is G_mid - G_low, the high band I - G_mid): it must blur
    # less than the low filter (sigma below hybrid_sigma of every family: 1.5, 2; IF 2); chosen, not measured
    hybrid_mid_kernel_size: int = 5
    hybrid_mid_sigma: float = 0.75
    setup_prompts: tuple[str, ...] = ()  # the set-up figure's prompts (empty: the model's default_prompts)


@dataclass(frozen=True)
class ModelTraits:
    """A Denoiser's optional capabilities, declared (``den.traits``); every field has the plain model's default.

    Read them as ``den.traits.default_sampler`` and so on; a wrapper's are its wrapped model's.
    """

    # the sampler (a samplers.SAMPLERS name) its users take when none is asked for: heun for a flow UNet
    default_sampler: str = DEFAULT_SAMPLER
    # what the network predicts before the Denoiser serves it as eps (denoisers.OBJECTIVES): eps, v
    # (Salimans & Ho 2022) or flow, a rectified-flow velocity (flow.py); the evaluation records it
    objective: str = "eps"
    # the data set it was trained on ("mnist", "fashion-mnist"; technique defaults may depend on it), None if unknown
    dataset: str | None = None
    # the model family's own Part A defaults (DeepFloyd IF's prompts and kernel); None: by dataset
    technique_defaults: TechniqueDefaults | None = None
    # the autocast dtype of its forward pass (e.g. torch.bfloat16; devices.choose_precision), None: no autocast
    autocast_dtype: torch.dtype | None = None
    # whether its network runs in the channels-last (NHWC) memory format
    channels_last: bool = False
    # the number of sampling steps a command takes when given no --steps / --stride (timesteps.default), None:
    # the write-up's stride (35 steps); a course-flow model: its T, every step, as the course samples it
    default_steps: int | None = None
    # the timesteps a number of steps becomes on this model (--steps N and default_steps; timesteps.for_model), None:
    # timesteps.strided, which visits both ends; a few-step student: timesteps.shifted (from noise)
    timesteps_for: Callable[[int], list[int]] | None = None
    # the CFG scale distilled into it (a guidance-distilled student: its conditional pass is its teacher's guided
    # one, so it is sampled at that scale only, in one call; guidance.scale_for), None: guided as usual (a time
    # model's student too: it has nothing to guide)
    guidance: float | None = None
    # whether it is a distilled few-step student (training.distill), which is no teacher to distill again
    student: bool = False
    # a backend's own timesteps for a number of steps (DeepFloyd IF: its scheduler's set_timesteps, as
    # IFPipeline visits them), None: timesteps.strided
    pipeline_timesteps: Callable[[int], list[int]] | None = None


DIGIT_DEFAULTS = TechniqueDefaults()
# Per dataset, where a measurement chose otherwise (README, "Does another filter help?"): on MNIST the
# shipped flow model's hybrids read both ways 21% of the time with sigma 2 against 9% with 1.5 (3 pairs,
# 30 samples each); on Fashion-MNIST 1.5 stays best (22% against 18%).
# The emoji model (32x32 colour, text prompts): the write-up's prompts where an emoji fits (its old man, and fire
# upside down: "fire" reads both ways in 95% of samples, "a campfire" -- the tent emoji -- in 0%; its skull far
# away, a waterfall up close -> a water wave); the hybrid filter 9 / 1.5, chosen by measurement (both ways, high
# band read up close: 67% mean over 3 pairs against 37% for sigma 2 and 0% for 13 / 3; README "Text to image on a
# CPU", benchmarks/emoji_illusions.py).
EMOJI_DEFAULTS = replace(
    DIGIT_DEFAULTS,
    anagram_prompts=("an old man", "fire"),
    anagram_views=("vflip",),
    hybrid_prompts=("a skull", "a water wave"),
    setup_prompts=("an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship"),
)
DATASET_DEFAULTS: dict[str, TechniqueDefaults] = {
    "mnist": replace(DIGIT_DEFAULTS, hybrid_sigma=2.0),
    "emoji": EMOJI_DEFAULTS,
}


def defaults_for(denoiser) -> TechniqueDefaults:
    """The denoiser's ``traits.technique_defaults``, else those of its ``traits.dataset`` (:data:`DATASET_DEFAULTS`),
    else :data:`DIGIT_DEFAULTS`."""
    own = denoiser.traits.technique_defaults
    return own or DATASET_DEFAULTS.get(denoiser.traits.dataset or "", DIGIT_DEFAULTS)
