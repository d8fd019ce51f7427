"""Metric primitives: FID, class accuracy and histograms with a trained classifier (classify.py),
PSNR, a classical baseline (best Gaussian blur) for the one-step denoiser, and background grain.

FID (Heusel et al. 2017) is computed by torchmetrics' ``FrechetInceptionDistance`` with the
classifier's penultimate features (models/classifier.py) as the feature extractor, since
Inception v3 knows nothing about 28x28 digits (and its weights cannot be fetched offline).
FID is biased upwards at small sample counts, so it is reported beside ``reference_fid``:
real train images against the same test set at the same count, the floor a perfect model
would reach. Images are float (N,C,H,W) in [0,1] throughout; the classifier must be in
eval mode (BatchNorm). The procedures that draw samples and sweep settings with these
metrics are in evaluation.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fundiff.data import to_unit_float
from fundiff.errors import FundiffError
from fundiff.models.classifier import predict
from fundiff.views import GaussianFilter

BLUR_KERNELS: tuple[int, ...] = (1, 3, 5, 7, 9, 11)  # 1 is the identity (no blur)
BLUR_SIGMAS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


# -- FID --------------------------------------------------------------------------------------
class _Features(nn.Module):
    """A classifier's ``features`` as torchmetrics' feature extractor: (N,C,H,W) -> (N,d) float32."""

    def __init__(self, classifier: nn.Module, num_features: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = num_features  # torchmetrics reads this instead of probing with a 3x299x299 image

    def train(self, mode: bool = True) -> _Features:
        return self  # the classifier stays in eval mode whatever torchmetrics does

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x).float()


class FID:
    """Frechet distance (Heusel et al. 2017) to a fixed real set in a classifier's feature space.

    d^2 = |mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2)) between Gaussians fit to the
    features of the real and the generated images; torchmetrics' FrechetInceptionDistance
    with the classifier as its feature extractor, statistics in float64. The real set's
    statistics are computed once, here; each call scores one generated set against them.
    real (N,C,H,W) float in [0,1], N >= 2; moved in batches to the classifier's device.
    """

    def __init__(self, classifier: nn.Module, real: Tensor, *, batch_size: int = 1000) -> None:
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance
        except ImportError:
            raise FundiffError("FID needs torchmetrics: pip install torchmetrics") from None
        if classifier.training:
            raise FundiffError(
                "the classifier is in training mode (BatchNorm would use batch statistics); call .eval() first"
            )
        if len(real) < 2:
            raise FundiffError(f"FID needs at least 2 images per set, got {len(real)} real images")
        self.device = next(classifier.parameters()).device
        self.batch_size = batch_size
        with torch.no_grad():
            d = classifier.features(real[:1].to(self.device)).shape[-1]
        extractor = _Features(classifier, d)
        # reset() keeps the real statistics and clears the generated ones
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, sync_on_compute=False).to(
            self.device
        )
        self._update(real, real=True)

    @torch.no_grad()
    def _update(self, images: Tensor, *, real: bool) -> None:
        for i in range(0, len(images), self.batch_size):
            self.metric.update(images[i : i + self.batch_size].to(self.device), real=real)

    @torch.no_grad()
    def __call__(self, fake: Tensor) -> float:
        """FID of fake (M,C,H,W) float in [0,1], M >= 2, against the real set."""
        if len(fake) < 2:
            raise FundiffError(f"FID needs at least 2 images per set, got {len(fake)} generated images")
        self.metric.reset()
        self._update(fake, real=False)
        return float(self.metric.compute())


def fid(classifier: nn.Module, real: Tensor, fake: Tensor, *, batch_size: int = 1000) -> float:
    """FID (Heusel et al. 2017) between real (N,C,H,W) and fake (M,C,H,W) float in [0,1]; see FID."""
    return FID(classifier, real, batch_size=batch_size)(fake)


def reference_fid(fid_to_real: FID, train: Tensor, *, n: int, generator: torch.Generator) -> float:
    """FID of ``n`` random train images against FID's real set: the floor a perfect model would reach at n.

    train (N,C,H,W) float in [0,1] or uint8 in 0..255 (converted after subsetting, to spare
    memory). The subset is drawn with ``generator`` (CPU).
    """
    if not 2 <= n <= len(train):
        raise FundiffError(f"the reference FID needs 2..{len(train)} train images, got n={n}")
    subset = train[torch.randperm(len(train), generator=generator)[:n].to(train.device)]
    if subset.dtype == torch.uint8:
        subset = to_unit_float(subset)
    return fid_to_real(subset)


# -- class accuracy and histograms ------------------------------------------------------------
@dataclass(frozen=True)
class ClassAccuracy:
    """How often the classifier sees the class a sample was asked to be."""

    overall: float  # fraction of all samples classified as their target class
    per_class: tuple[float, ...]  # per target class k: fraction classified as k (nan without samples)
    counts: tuple[int, ...]  # samples per target class

    def to_dict(self, class_names: Sequence[str] = ()) -> dict:
        names = list(class_names) or [str(k) for k in range(len(self.per_class))]
        return {
            "overall": self.overall,
            "per_class": dict(zip(names, self.per_class)),
            "counts": dict(zip(names, self.counts)),
        }


def accuracy_of(pred: Tensor, target: Tensor, num_classes: int) -> ClassAccuracy:
    """ClassAccuracy from predicted (N,) and target (N,) int class indices in 0..num_classes-1."""
    pred, target = pred.cpu(), target.cpu()
    hit = (pred == target).float()
    counts = torch.bincount(target, minlength=num_classes)
    hits = torch.bincount(target, weights=hit, minlength=num_classes)
    per_class = tuple(float(h / c) if c else math.nan for h, c in zip(hits.tolist(), counts.tolist()))
    return ClassAccuracy(float(hit.mean()) if len(hit) else math.nan, per_class, tuple(counts.tolist()))


def class_accuracy(
    classifier: nn.Module, images: Tensor, target: Tensor, *, num_classes: int, batch_size: int = 1000
) -> ClassAccuracy:
    """Classify images (N,C,H,W) float in [0,1] and score them against target classes (N,) int64."""
    return accuracy_of(predict(classifier, images, batch_size=batch_size), target, num_classes)


def class_histogram(
    classifier: nn.Module, images: Tensor, *, num_classes: int, batch_size: int = 1000
) -> tuple[int, ...]:
    """How many of images (N,C,H,W) float in [0,1] the classifier puts in each class."""
    return tuple(
        torch.bincount(predict(classifier, images, batch_size=batch_size).cpu(), minlength=num_classes).tolist()
    )


# -- PSNR -------------------------------------------------------------------------------------
def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio 10 log10(1 / mse) in dB of images in [0,1] (peak 1); inf for mse = 0."""
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


# -- classical baseline for the one-step denoiser ---------------------------------------------
def best_blur(
    clean: Tensor, noisy: Tensor, *, kernels: Sequence[int] = BLUR_KERNELS, sigmas: Sequence[float] = BLUR_SIGMAS
) -> tuple[GaussianFilter, float]:
    """The Gaussian blur of the grid with the lowest MSE from ``noisy`` to ``clean`` (both (N,C,H,W)), and that MSE.

    The blurred image is ``GaussianFilter.lowpass(noisy)`` clamped to [0,1] (the images' range).
    """
    grid = [GaussianFilter(1, 1.0)] if 1 in kernels else []
    grid += [GaussianFilter(k, s) for k in kernels if k > 1 for s in sigmas]
    if not grid:
        raise FundiffError("the blur grid is empty; give at least one kernel size")
    scores = [(float(((b.lowpass(noisy).clamp(0, 1) - clean) ** 2).mean()), i) for i, b in enumerate(grid)]
    mse, i = min(scores)
    return grid[i], mse


@dataclass(frozen=True)
class BlurRow:
    sigma: float  # noise level of z = x + sigma * eps
    blur: GaussianFilter  # the best blur for this sigma on the tuning images
    mse: float  # MSE of blur(z) against x on the evaluation images, images in [0,1]
    psnr: float  # 10 log10(1 / mse), dB


def blur_baseline(
    x_tune: Tensor, x: Tensor, noisy: dict[float, Tensor], *, generator: torch.Generator
) -> list[BlurRow]:
    """The best Gaussian blur per sigma as a classical denoiser, tuned on held-out images.

    x_tune (K,C,H,W) and x (N,C,H,W) are clean images in [0,1]; ``noisy[sigma]`` is the
    (N,C,H,W) noisy version of x that the learned denoiser saw (same noise, fair comparison).
    The tuning noise comes from ``generator`` (on x_tune's device).
    """
    rows = []
    for sigma, z in noisy.items():
        z_tune = x_tune + sigma * torch.randn(x_tune.shape, generator=generator, device=x_tune.device)
        b, _ = best_blur(x_tune, z_tune)
        mse = float(((b.lowpass(z).clamp(0, 1) - x) ** 2).mean())
        rows.append(BlurRow(float(sigma), b, mse, psnr(mse)))
    return rows


GRAIN_INK = 0.3  # a pixel at least this bright is ink
GRAIN_LEVEL = 0.05  # a background pixel brighter than this shows as grain on black
GRAIN_MARGIN = 1  # background: pixels more than this many pixels (Chebyshev) from any ink


def background_grain(x: Tensor) -> float:
    """The share of background pixels brighter than :data:`GRAIN_LEVEL` in images ``x`` (N,C,H,W), clamped to [0, 1].

    Background: every pixel whose (2 GRAIN_MARGIN + 1)^2 neighbourhood holds no ink (>= :data:`GRAIN_INK`), so
    the anti-aliased rims of the strokes do not count: MNIST's test set scores exactly 0. (Counting every
    pixel below 0.3 as background, as fundiff did before, gives MNIST itself 3.6%: its stroke edges.)"""
    x = x.clamp(0, 1).float()
    k = 2 * GRAIN_MARGIN + 1
    near_ink = F.max_pool2d((x >= GRAIN_INK).float().flatten(0, 1)[:, None], k, 1, GRAIN_MARGIN).view_as(x) > 0
    background = x[~near_ink]
    return float((background > GRAIN_LEVEL).float().mean()) if background.numel() else 0.0


__all__ = [
    "background_grain",
    "FID", "fid", "reference_fid", "ClassAccuracy", "accuracy_of", "class_accuracy", "class_histogram", "psnr",
    "BLUR_KERNELS", "BLUR_SIGMAS", "best_blur", "BlurRow", "blur_baseline",
]  # fmt: skip
