"""What a Denoiser declares about itself beyond the math: the defaults its users take.

:class:`TechniqueDefaults` holds a model family's choices for the Part A techniques where the write-up's
depend on the model (prompts, the hybrid's filter). It lives below :mod:`fundiff.techniques` so that a
backend can declare its own without importing the application layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TechniqueDefaults:
    """A model family's defaults for the Part A commands, where the write-up's choices depend on the model.

    A denoiser may carry its own as ``technique_defaults`` (DeepFloyd IF: the write-up's prompts,
    kernel 33); :func:`defaults_for` falls back to :data:`DIGIT_DEFAULTS` (fundiff's 28x28 models).
    """

    prompt: str = ""  # the generic prompt of denoise / sdedit / inpaint (the write-up's "a high quality photo")
    anagram_prompts: tuple[str, ...] = ("6", "9")
    anagram_views: tuple[str, ...] = ("rot180",)  # views of prompts 2.. (the first is seen as is)
    hybrid_prompts: tuple[str, str] = ("0", "1")  # (seen from afar: low frequencies, up close: high)
    hybrid_kernel_size: int = 9  # 28x28 digits: sigma 1 lets the low prompt win, 2-3 gives neither
    hybrid_sigma: float = 1.5
    setup_prompts: tuple[str, ...] = ()  # the set-up figure's prompts (empty: the model's default_prompts)
