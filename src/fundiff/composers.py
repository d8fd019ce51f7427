"""Several (view, prompt) noise estimates combined into one: visual anagrams and hybrid images (two or three
frequency bands, or a band held to a real image's with :func:`hold_band`).

The wrappers are themselves Denoisers (they carry ``schedule``, ``channels``, ``image_size``,
``value_range`` and the wrapped model's ``traits``), so every sampler and edit runs on them unchanged.

Conditioning: an Anagram or Hybrid (Factorized) holds one conditioning per part, given at construction
(``from_prompts`` encodes prompts); it is not ``conditional``. The ``cond`` passed at call
time only tells samplers the batch size: ``encode`` accepts only null prompts "" and returns
empty (B, 0) placeholders, and a call with a non-empty ``cond`` is an error (it would be
ignored). Each part's cond is (1, ...) (shared by the batch) or (B, ...).

Guidance: wrap the base denoiser in CFG *inside* the composer, ``Anagram(CFG(den, s), ...)``
(``CFG(Anagram(...))`` is refused: it would guide nothing).
Each part is then guided for its own prompt against the null prompt, as visual_anagrams does.
Both CFG and these combinations are linear in eps, so this equals guiding the combination.
All parts (and CFG's cond/uncond pairs) run as one batched call of the wrapped denoiser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fundiff.denoisers import Denoiser, DenoiserWrapper, Prediction
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.views import FrequencyBands, GaussianFilter, View, get_view


def _predict_parts(denoiser: Denoiser, xs: Sequence[Tensor], t: Tensor, conds: Sequence[Tensor]) -> list[Prediction]:
    """One batched call: part i is (xs[i] (B,C,H,W), conds[i] (1 or B, ...)) at timesteps t (B,)."""
    batch = xs[0].shape[0]
    full = []
    for c in conds:
        if c.shape[0] not in (1, batch):
            raise FundiffError(
                f"a part's conditioning has batch size {c.shape[0]}; give 1 (shared) or {batch} (one per image)"
            )
        full.append(c.to(xs[0].device).expand(batch, *c.shape[1:]))
    n = len(xs)
    pred = denoiser(torch.cat(list(xs)), t.repeat(n), torch.cat(full))
    eps = pred.eps.chunk(n)
    v = pred.v.chunk(n) if pred.v is not None else [None] * n
    x0 = pred.x0.chunk(n) if pred.x0 is not None else [None] * n
    return [Prediction(e, vi, x) for e, vi, x in zip(eps, v, x0)]


class _Composer(DenoiserWrapper):
    """A wrapper holding one conditioning per part, with the placeholder ``encode``."""

    conditional = False  # prompts are fixed at construction
    default_prompts = ("",)

    def __init__(self, denoiser: Denoiser, conds: Sequence[Tensor]) -> None:
        super().__init__(denoiser)
        self.conds = tuple(conds)

    def describe_prompt(self, prompt: str) -> str:
        self.encode([prompt])  # raises for a non-null prompt
        return ""

    def _check_call_cond(self, cond: Tensor | None) -> None:
        """Call-time cond must be None or an empty (B, 0) placeholder from ``encode``: the prompts are the parts'."""
        if cond is not None and cond.numel() > 0:
            raise FundiffError(
                f"{type(self).__name__} takes its prompts at construction; call it with cond=None or its own encode "
                f'of null prompts "", not a {tuple(cond.shape)} conditioning'
            )

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """Empty (len(prompts), 0) placeholders: the parts' prompts were fixed at construction."""
        if any(p.strip() for p in prompts):
            raise FundiffError(
                f"{type(self).__name__} takes its prompts at construction (from_prompts); "
                'sample it with null prompts ""'
            )
        return torch.zeros(len(prompts), 0, device=self.conds[0].device)


class Anagram(_Composer):
    """Visual anagrams (Geng et al. 2024, Eq. 3): eps = mean_i V_i^-1(eps(V_i(x_t), t, cond_i)).

    ``views`` (names or Views) and ``conds`` pair up: view i of the image should look like
    prompt i. x_t (B,C,H,W) in the model's noisy space; each view is lifted to x_t by
    :meth:`View.view_x_t` (exact for negation of [0, 1] data too). Learned variance v is
    combined the same way, un-permuted but never negated (convention 3). Call-time cond must
    be None or empty (module docstring).
    """

    def __init__(self, denoiser: Denoiser, views: Sequence[str | View], conds: Sequence[Tensor]) -> None:
        views = [get_view(v) for v in views]
        if len(views) < 1 or len(views) != len(conds):
            raise FundiffError(
                "an anagram needs one prompt per view and at least one view; "
                f"got {len(views)} view(s) and {len(conds)} prompt(s)"
            )
        super().__init__(denoiser, conds)
        self.views = tuple(views)

    @classmethod
    def from_prompts(cls, denoiser: Denoiser, views: Sequence[str | View], prompts: Sequence[str]) -> "Anagram":
        """An anagram whose view i shows ``prompts[i]`` (encoded by ``denoiser``)."""
        if len(views) != len(prompts):
            raise FundiffError(
                f"an anagram needs one prompt per view; got {len(views)} view(s) and {len(prompts)} prompt(s)"
            )
        return cls(denoiser, views, [denoiser.encode([p]) for p in prompts])

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        self._check_call_cond(cond)
        alpha_t = self.schedule.at(t, like=x_t).alpha
        xs = [view.view_x_t(x_t, alpha_t, self.value_range) for view in self.views]
        parts = _predict_parts(self.denoiser, xs, t, self.conds)
        eps = torch.stack([view.inverse_view(p.eps) for view, p in zip(self.views, parts)]).mean(0)
        x0 = None  # a model's own clean estimates (Prediction.x0) are images: un-viewed as images
        if parts[0].x0 is not None:
            x0 = torch.stack([v.inverse_view_image(p.x0, self.value_range) for v, p in zip(self.views, parts)]).mean(0)
        if parts[0].v is None:
            return Prediction(eps, x0=x0)
        v = torch.stack([view.inverse_view_variance(p.v) for view, p in zip(self.views, parts)]).mean(0)
        return Prediction(eps, v, x0)


class Factorized(_Composer):
    """Factorized diffusion over frequency bands (Geng et al. 2024): the composite eps = sum_i f_i(eps(x_t, t, cond_i)).

    ``bands`` (:class:`~fundiff.views.FrequencyBands`) f_1..f_k from the lowest frequencies, summing to the
    identity; ``conds`` one per band, in that order. Part i of the sample shows prompt i in its band: with
    three bands, seen from afar (most blurred) it shows the first prompt, at a middle distance the second, up
    close the third. All conds equal: eps is that cond's estimate (to float rounding: the bands sum to the
    whole). x_t (B,C,H,W); learned variance v is split the same way and clamped to its range [-1, 1].
    Call-time cond must be None or empty (module docstring).
    """

    def __init__(self, denoiser: Denoiser, conds: Sequence[Tensor], bands: FrequencyBands) -> None:
        if len(conds) != len(bands):
            raise FundiffError(f"a hybrid needs one prompt per band: {len(bands)} band(s), {len(conds)} prompt(s)")
        super().__init__(denoiser, conds)
        self.bands = bands

    @classmethod
    def from_prompts(cls, denoiser: Denoiser, prompts: Sequence[str], bands: FrequencyBands) -> "Factorized":
        """Band i shows ``prompts[i]`` (encoded by ``denoiser``), from the lowest frequencies."""
        return cls(denoiser, [denoiser.encode([p]) for p in prompts], bands)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        self._check_call_cond(cond)
        parts = _predict_parts(self.denoiser, [x_t] * len(self.conds), t, self.conds)
        eps = sum(self.bands.band(i, p.eps) for i, p in enumerate(parts))
        x0 = None if parts[0].x0 is None else sum(self.bands.band(i, p.x0) for i, p in enumerate(parts))
        if parts[0].v is None:
            return Prediction(eps, x0=x0)
        return Prediction(eps, sum(self.bands.band(i, p.v) for i, p in enumerate(parts)).clamp(-1, 1), x0)


class Hybrid(Factorized):
    """Hybrid images by factorized diffusion (Geng et al. 2024): eps = lowpass(eps_low) + highpass(eps_high).

    The two-band :class:`Factorized`: eps_low = eps(x_t, t, cond_low), eps_high = eps(x_t, t, cond_high);
    x_t (B,C,H,W). Seen from afar (blurred) the image shows the low prompt, up close the high prompt.
    """

    def __init__(self, denoiser: Denoiser, cond_low: Tensor, cond_high: Tensor, lowpass: GaussianFilter) -> None:
        super().__init__(denoiser, (cond_low, cond_high), FrequencyBands((lowpass,)))
        self.filter = lowpass

    @classmethod
    def from_prompts(cls, denoiser: Denoiser, low: str, high: str, lowpass: GaussianFilter) -> "Hybrid":
        """A hybrid of prompt ``low`` (coarse structure) and prompt ``high`` (fine detail)."""
        return cls(denoiser, denoiser.encode([low]), denoiser.encode([high]), lowpass)


def hold_band(
    schedule: NoiseSchedule, x_ref: Tensor, band: Callable[[Tensor], Tensor], *, generator: torch.Generator | None
) -> Callable[[int, int, int, Tensor, Tensor], Tensor]:
    """Hybrids from a real image (Geng et al. 2024): hold one band fixed to a given image's and generate the rest.

    A step hook for :func:`fundiff.samplers.sample`: after every step to t', the band of x_t' is replaced by the
    same band of x_ref noised to t' (ILVR, Choi et al. 2021, Alg. 1, with ``band`` as its low-pass phi)::

        x_t' <- x_t' - band(x_t') + band(q_sample(x_ref, t', fresh noise)),   x_ref itself at t' = -1

    as inpainting's "replace" does for a mask (edits.inpaint; a mask is a band too). The replacement acts on the
    noisy image x_t', not on the noise estimate, so the composite estimate of the other bands is unchanged. The
    final x_0's band is band(x_ref) plus band(x_0 - band(x_0)): close to band(x_ref) but not equal for a Gaussian
    low-pass, which is no projection (band(band(x)) != band(x)). x_ref (1 or B, C, H, W) in the model's value
    range (a (1, ...) image is shared by the batch); the noise comes from ``generator``, one draw per step.
    """

    def hold(i: int, t: int, t_prev: int, x_prev: Tensor, x0_hat: Tensor) -> Tensor:
        if x_ref.shape[0] not in (1, x_prev.shape[0]) or x_ref.shape[1:] != x_prev.shape[1:]:
            raise FundiffError(
                f"the held image is {tuple(x_ref.shape)}, the samples {tuple(x_prev.shape)}; give one image or one "
                "per sample, of the samples' channels and size"
            )
        ref = x_ref.to(device=x_prev.device, dtype=x_prev.dtype).expand_as(x_prev)
        if t_prev >= 0:
            noise = torch.randn(ref.shape, generator=generator, device=ref.device, dtype=ref.dtype)
            ref = schedule.q_sample(ref, t_prev, noise)
        return x_prev - band(x_prev) + band(ref)

    return hold
