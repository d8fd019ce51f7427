"""What a training config trains on: its dataset's images and labels, and for a text model its texts.

:func:`training_inputs` is used by ``fundiff train`` and the tour's retraining alike.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from fundiff import data
from fundiff.errors import FundiffError
from fundiff.training.config import TrainConfig


def training_inputs(cfg: TrainConfig, data_dir: str | Path | None = None) -> tuple[tuple[Tensor, Tensor], tuple | None]:
    """((images, labels), text) for ``cfg``: ``text`` is None, or for a text model (``cfg.text``) the pair
    (fundiff.text.TextEncoder built from the emoji's texts in ``cfg.text``'s design, its variant_table).
    ``cfg.train_images``: only the first that many images (and their labels)."""
    if cfg.text == "none":
        images, labels = data.load_split(cfg.dataset, data_dir, train=True)
        return _first(cfg, images, labels), None
    import torch

    from fundiff import emoji
    from fundiff.text import TextEncoder

    images, items = emoji.load(data.fetch("emoji", data_dir), resolution=emoji.DEFAULT_RESOLUTION)
    texts, names = [e.texts() for e in items], [e.names() for e in items]
    encoder = TextEncoder.build(texts, names, cfg.text, emoji.SKIN_TONES.values())
    return _first(cfg, images, torch.arange(len(items))), (encoder, encoder.variant_table(texts, names))


def _first(cfg: TrainConfig, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    if cfg.train_images is None:
        return images, labels
    if cfg.train_images > len(images):
        raise FundiffError(
            f"--train-images {cfg.train_images} is more than the {len(images)} images of {cfg.dataset}'s train "
            "split; give a smaller number or drop the flag"
        )
    return images[: cfg.train_images], labels[: cfg.train_images]


__all__ = ["training_inputs"]
