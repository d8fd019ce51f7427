"""Several (view, prompt) noise estimates combined into one: visual anagrams and hybrid images.

Both wrappers are themselves Denoisers (they carry ``schedule``, ``channels``, ``image_size``,
``value_range`` and the wrapped model's ``traits``), so every sampler and edit runs on them unchanged.

Conditioning: an Anagram or Hybrid holds one conditioning per part, given at construction
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

from collections.abc import Sequence

import torch
from torch import Tensor

from fundiff.denoisers import Denoiser, DenoiserWrapper, Prediction
from fundiff.errors import FundiffError
from fundiff.views import GaussianFilter, View, get_view


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
    return [Prediction(e, vi) for e, vi in zip(eps, v)]


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
        if parts[0].v is None:
            return Prediction(eps)
        v = torch.stack([view.inverse_view_variance(p.v) for view, p in zip(self.views, parts)]).mean(0)
        return Prediction(eps, v)


class Hybrid(_Composer):
    """Hybrid images by factorized diffusion (Geng et al. 2024): eps = lowpass(eps_low) + highpass(eps_high).

    eps_low = eps(x_t, t, cond_low), eps_high = eps(x_t, t, cond_high); x_t (B,C,H,W). Seen
    from afar (blurred) the image shows the low prompt, up close the high prompt. Learned
    variance v is split the same way and clamped to its range [-1, 1]. Call-time cond must be
    None or empty (module docstring).
    """

    def __init__(self, denoiser: Denoiser, cond_low: Tensor, cond_high: Tensor, lowpass: GaussianFilter) -> None:
        super().__init__(denoiser, (cond_low, cond_high))
        self.filter = lowpass

    @classmethod
    def from_prompts(cls, denoiser: Denoiser, low: str, high: str, lowpass: GaussianFilter) -> "Hybrid":
        """A hybrid of prompt ``low`` (coarse structure) and prompt ``high`` (fine detail)."""
        return cls(denoiser, denoiser.encode([low]), denoiser.encode([high]), lowpass)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Prediction:
        self._check_call_cond(cond)
        low, high = _predict_parts(self.denoiser, [x_t, x_t], t, self.conds)
        eps = self.filter.lowpass(low.eps) + self.filter.highpass(high.eps)
        if low.v is None:
            return Prediction(eps)
        return Prediction(eps, (self.filter.lowpass(low.v) + self.filter.highpass(high.v)).clamp(-1, 1))
