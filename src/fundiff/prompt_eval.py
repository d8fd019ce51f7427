"""How well a text-to-image model follows its prompts, measured against its own training set (the emoji).

- **prompt fidelity**: the share of samples whose nearest training image (Euclidean distance in pixels) is
  one of the prompt's emoji (any of its skin tones); chance is about 1 in 1,600;
- **diversity**: per prompt, the number of distinct emoji that its samples' nearest images belong to,
  divided by the samples per prompt (1: every sample looks like a different emoji; 1/n: all the same one);
- with an **emoji classifier** (``fundiff train classifier --dataset emoji``, shipped as ``emoji-classifier``):
  the same fidelity with the nearest training image in the classifier's features (Euclidean, its penultimate
  layer) instead of in pixels; and :func:`caption_fid`, the FID in those features of one sample for each of
  ``n`` training images drawn at random, prompted by its own title ("older man, dark skin tone"), against the
  whole training set, beside its floor (the FID of ``n`` training images drawn at random: the training set's
  own captions, as text-to-image FIDs use a data set's captions). It counts diversity and coverage, which the
  fidelity does not: a model that draws one image per prompt well scores a high fidelity and a poor FID.

:func:`eval_prompts` picks the prompts: the CLDR labels of ``count`` emoji spread evenly over the whole list
(every category), the same for every model; :data:`WRITEUP_TARGETS` adds the write-up's prompts with the emoji
each should give.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fundiff import samplers
from fundiff.guidance import CFG

# the write-up's prompts (fundiff.emoji.DEFAULT_PROMPTS) -> the Unicode names of the emoji that answer them
WRITEUP_TARGETS: dict[str, tuple[str, ...]] = {
    "a rocket ship": ("ROCKET",),
    "a man wearing a top hat": ("TOP HAT", "FACE WITH COWBOY HAT", "MAN IN BUSINESS SUIT LEVITATING"),
    "a snowy mountain": ("SNOW-CAPPED MOUNTAIN", "MOUNT FUJI", "MOUNTAIN"),
    "an old man": ("OLDER MAN",),
    "a campfire": ("FIRE", "CAMPING"),
    "a skull": ("SKULL", "SKULL AND CROSSBONES"),
    "a water wave": ("WATER WAVE",),
    "a cat face": ("CAT FACE",),
    "a dog": ("DOG", "DOG FACE"),
    "a pizza": ("SLICE OF PIZZA",),
}


def eval_prompts(items: Sequence, count: int = 50) -> list[tuple[str, tuple[str, ...]]]:
    """``count`` (prompt, target emoji names) pairs: the labels of emoji spread evenly over ``items``
    (fundiff.emoji.Emoji, base emoji only, in the dataset's order)."""
    base = [e for e in items if not e.skin_tone]
    picks = [base[round(i * (len(base) - 1) / max(1, count - 1))] for i in range(min(count, len(base)))]
    return [(e.label or e.name.lower(), (e.name,)) for e in picks]


@torch.no_grad()
def features_of(classifier, images: Tensor, batch: int = 500) -> Tensor:
    """The classifier's features (N, d) of images (N,C,H,W), float in [0, 1] or uint8, on the CPU."""
    device = next(classifier.parameters()).device
    out = []
    for part in images.split(batch):
        x = part.float().div(255) if part.dtype == torch.uint8 else part.float()
        out.append(classifier.features(x.to(device)).float().cpu())
    return torch.cat(out)


def nearest_features(samples: Tensor, train_features: Tensor) -> Tensor:
    """Index of the nearest training image of each sample's features (N, d) among ``train_features`` (M, d)."""
    return torch.cdist(samples, train_features).argmin(1)


def nearest(samples: Tensor, train: Tensor, chunk: int = 256) -> Tensor:
    """Index of the nearest training image (L2 in pixels) of each sample; samples (B,C,H,W) in [0, 1],
    train uint8 (N,C,H,W)."""
    ref = train.flatten(1).float().div(255)
    ref_sq = ref.pow(2).sum(1)
    out = []
    for s in samples.flatten(1).float().split(chunk):
        d = ref_sq[None] - 2 * s @ ref.T  # + |s|^2, the same for every training image
        out.append(d.argmin(1))
    return torch.cat(out)


@torch.no_grad()
def prompt_fidelity(
    denoiser,
    train: Tensor,
    items: Sequence,
    prompts: Sequence[tuple[str, Sequence[str]]],
    *,
    n: int = 4,
    guidance: float = 5.0,
    timesteps: list[int],
    sampler=None,
    seed: int = 0,
    batch: int = 100,
    classifier=None,
) -> dict:
    """Fidelity and diversity (module docstring) of ``n`` samples per prompt at CFG ``guidance``, per prompt too;
    with an emoji ``classifier`` (eval mode) also the fidelity in its features."""
    texts = [p for p, _ in prompts for _ in range(n)]
    x = _sample(denoiser, texts, guidance=guidance, timesteps=timesteps, sampler=sampler, seed=seed, batch=batch)
    names = [items[int(i)].name for i in nearest(x, train)]
    rows, hits = [], 0
    for k, (prompt, targets) in enumerate(prompts):
        got = names[k * n : (k + 1) * n]
        hit = sum(name in targets for name in got)
        hits += hit
        rows.append({"prompt": prompt, "hits": hit, "distinct": len(set(got)), "nearest": got})
    report = {
        "prompts": len(prompts),
        "samples_per_prompt": n,
        "guidance": guidance,
        "fidelity": hits / max(1, len(texts)),
        "diversity": sum(r["distinct"] for r in rows) / max(1, len(rows) * n),
        "per_prompt": rows,
    }
    if classifier is not None:  # the same samples, read in the classifier's features
        idx = nearest_features(features_of(classifier, x), features_of(classifier, train))
        names = [items[int(i)].name for i in idx]
        hits = sum(name in targets for k, (_, targets) in enumerate(prompts) for name in names[k * n : (k + 1) * n])
        report["fidelity_features"] = hits / max(1, len(texts))
    return report


@torch.no_grad()
def caption_fid(
    denoiser,
    classifier,
    train: Tensor,
    items: Sequence,
    *,
    n: int,
    guidance: float,
    timesteps: list[int],
    sampler=None,
    seed: int = 0,
    batch: int = 100,
) -> dict:
    """{"n", "fid", "fid_floor"}: the FID in ``classifier``'s features of one sample per each of ``n`` training
    images drawn at random (``seed``), prompted by its title, against all of ``train``; the floor is the FID of
    ``n`` other random training images (module docstring)."""
    from fundiff.metrics import FID, reference_fid

    g = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(items), generator=g)[:n].tolist()
    titles = [items[i].title() for i in picks]
    x = _sample(denoiser, titles, guidance=guidance, timesteps=timesteps, sampler=sampler, seed=seed, batch=batch)
    fid_to_train = FID(classifier, train.float().div(255))
    floor = reference_fid(fid_to_train, train, n=len(picks), generator=g)
    return {"n": len(picks), "fid": round(fid_to_train(x), 3), "fid_floor": round(floor, 3)}


def _sample(denoiser, texts: list[str], *, guidance: float, timesteps, sampler, seed: int, batch: int) -> Tensor:
    """One CFG sample per text, in [0, 1] on the CPU: ``batch`` texts at a time, noise from one generator seeded
    with ``seed`` on the denoiser's device."""
    model = CFG(denoiser, guidance)
    g = torch.Generator(device=denoiser.device).manual_seed(seed)
    xs = []
    for start in range(0, len(texts), batch):
        part = texts[start : start + batch]
        x = samplers.sample_from_noise(model, model.encode(part), timesteps, generator=g, sampler=sampler)
        xs.append(x.clamp(0, 1).cpu())
    return torch.cat(xs)


__all__ = [
    "WRITEUP_TARGETS",
    "caption_fid",
    "eval_prompts",
    "features_of",
    "nearest",
    "nearest_features",
    "prompt_fidelity",
]
