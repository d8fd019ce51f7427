"""What a Denoiser declares about itself beyond the math: :class:`ModelTraits`, and the defaults its users take.

:class:`ModelTraits` is every optional capability of a Denoiser in one frozen record, ``den.traits``
(denoisers.py): its default sampler, what its network predicts, what it was trained on, its own technique
defaults and timesteps, and its arithmetic. Wrappers (CFG, the composers) forward the wrapped model's.
:class:`TechniqueDefaults` holds a model family's choices for the Part A techniques where the write-up's
depend on the model (prompts, the hybrid's filter). Both live below :mod:`fundiff.techniques` so that a
backend can declare its own without importing the application layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_SAMPLER = "ddpm"  # the sampler of a model that names no other (samplers.SAMPLERS)


@dataclass(frozen=True)
class TechniqueDefaults:
    """A model family's defaults for the Part A commands, where the write-up's choices depend on the model.

    A denoiser may carry its own in ``traits.technique_defaults`` (DeepFloyd IF: the write-up's prompts,
    kernel 33); ``techniques.defaults_for`` falls back to its dataset's, else ``techniques.DIGIT_DEFAULTS``
    (fundiff's 28x28 models).
    """

    prompt: str = ""  # the generic prompt of denoise / sdedit / inpaint (the write-up's "a high quality photo")
    anagram_prompts: tuple[str, ...] = ("6", "9")
    anagram_views: tuple[str, ...] = ("rot180",)  # views of prompts 2.. (the first is seen as is)
    hybrid_prompts: tuple[str, str] = ("0", "1")  # (seen from afar: low frequencies, up close: high)
    hybrid_kernel_size: int = 9  # 28x28 digits: sigma 1 lets the low prompt win, 2-3 gives neither
    hybrid_sigma: float = 1.5
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
    # a backend's own timesteps for a number of steps (DeepFloyd IF: its scheduler's set_timesteps, as
    # IFPipeline visits them), None: timesteps.strided
    pipeline_timesteps: Callable[[int], list[int]] | None = None
