"""The tour's settings and what its sections share: sizes, per-dataset choices, loaded models, commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from fundiff import provenance
from fundiff.devices import resolve_device
from fundiff.traits import EMOJI_DEFAULTS


@dataclass(frozen=True)
class Sizes:
    """How much each figure draws: the default run fits 10 minutes on 2 CPU cores; QUICK is for tests.

    A technique parameter left None is the technique's own default (fundiff.specs / the figure functions)."""

    n: int = 4  # samples per prompt (CFG, inpainting, anagrams, hybrids, class samples)
    n_single: int = 8  # samples of the unconditioned figures (sampling, time model)
    steps: int | None = None  # --steps N; None: fundiff.timesteps.for_model (the write-up's stride, 35 steps)
    i_starts: tuple[int, ...] | None = None  # SDEdit starts
    i_start: int | None = None  # iterative denoising start index
    every: int | None = None  # iterative figure: every N-th step shown
    jump_length: int | None = None  # RePaint
    resample: int | None = None  # RePaint
    n_eval: int = 500  # test images for the sigma sweep's MSE / PSNR (as the shipped card)
    n_show: int = 8  # test images shown in the sweep figures
    pure_noise_images: int = 4096  # training images of the pure-noise denoiser (trained by the tour: ~20 s)


FULL = Sizes()
QUICK = Sizes(
    n=2,
    n_single=3,
    steps=6,
    i_starts=(1, 3),
    i_start=2,
    every=2,
    jump_length=2,
    resample=2,
    n_eval=8,
    n_show=4,
    pure_noise_images=32,
)


@dataclass(frozen=True)
class Choices:
    """The prompts and inputs each dataset's sections use (fundiff's showcase, scripts/showcase.sh)."""

    model: str  # the shipped class-conditioned model
    drawings: tuple[str, ...]  # shipped hand-drawn images (fundiff.images.drawing_names)
    drawn_prompt: str  # "" = unconditioned SDEdit
    img2img: str  # prompt of the conditioned image-to-image translation of the test image
    cfg: tuple[str, ...]  # prompts of the CFG figure
    inpaint: str
    anagram: tuple[str, str]
    view: str
    hybrid: tuple[str, str]  # (low = seen from afar, high = seen up close)
    hybrid3: tuple[str, str, str] = ()  # three bands (low, mid, high); chosen, not measured; () for the text model
    fast: str = ""  # the shipped few-step student of ``model`` (fundiff distill); "" for the text model


CHOICES = {
    "mnist": Choices(
        "mnist-class",
        ("two", "seven", "four"),
        "",
        "3",
        ("3", "7"),
        "9",
        ("6", "9"),
        "rot180",
        ("8", "3"),
        ("8", "0", "3"),
        fast="mnist-class-fast",
    ),
    "fashion-mnist": Choices(
        "fashion-class",
        ("shirt",),
        "a shirt",
        "sneaker",
        ("sneaker", "an ankle boot"),
        "sneaker",
        ("trouser", "a bag"),
        "vflip",
        ("bag", "t-shirt"),
        ("bag", "sneaker", "t-shirt"),
        fast="fashion-class-fast",
    ),
}
PART_B_MODELS = {"time": "mnist-time", "denoiser": "mnist-denoiser"}  # shipped; Part B's class model is --model's
TEXT_MODEL = "emoji"  # the shipped text-to-image model of the tour's text sections (role "emoji")
# the text sections' prompts: the write-up's where an emoji fits; the test image is the shipped tower
# (images.EMOJI_TEST_IMAGE), standing in for the Campanile; anagram and hybrid are the model's defaults (traits)
TEXT_CHOICES = Choices(
    TEXT_MODEL,
    ("sun-drawing",),
    "",
    "a rocket ship",
    ("a rocket ship", "a man wearing a top hat", "a snowy mountain", "a skull"),
    "a fire",
    EMOJI_DEFAULTS.anagram_prompts,
    EMOJI_DEFAULTS.anagram_views[0],
    EMOJI_DEFAULTS.hybrid_prompts,
)


@dataclass(frozen=True)
class Made:
    """What a section function returns: its figures (paths), the reproducing command and the numbers shown."""

    figures: list[Path]
    argv: list[str]  # the `fundiff ...` command line
    numbers: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    timesteps: list[int] | None = None
    guidance: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    id: str
    part: str  # "A" or "B"
    title: str
    caption: str  # one or two sentences on what it shows
    role: str  # the model it runs on (key of the tour's models)
    make: Callable[[TourState, Path], Made]


class TourState:
    """One tour's settings and what it loads lazily (models, the test image), shared by the sections."""

    def __init__(
        self,
        out: Path,
        models: dict[str, str],
        *,
        dataset: str,
        sizes: Sizes,
        seed: int,
        sampler: str | None,
        device: torch.device,
        data_dir: str | None,
    ) -> None:
        from fundiff.backends import runs

        self.out, self.dataset, self.sizes, self.seed, self.sampler = out, dataset, sizes, seed, sampler
        self.device, self.data_dir = device, data_dir
        self.names = models  # role -> name or run folder, as given
        self.folders = {role: runs.resolve(m) for role, m in models.items()}
        self.choices = CHOICES[dataset]
        self._denoisers: dict[str, object] = {}

    def denoiser(self, role: str):
        """The role's model as a Denoiser (fp32, as the tour's commands load it: --precision fp32)."""
        from fundiff.backends import runs

        if role not in self._denoisers:
            self._denoisers[role] = runs.load_denoiser(self.folders[role], device=self.device)
        return self._denoisers[role]

    def net(self, role: str):
        """The role's raw UNet (the one-step denoiser is not a diffusion Denoiser)."""
        from fundiff.backends import runs

        return runs.load(self.folders[role], device=self.device)[0]

    def card(self, role: str) -> dict:
        path = self.folders[role] / "card.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def card_numbers(self, role: str) -> list[tuple[str, str]]:
        """The evaluation numbers of the role's model card (class, time or denoiser kind)."""
        from fundiff.tour.numbers import class_numbers, denoiser_numbers, time_numbers

        by_kind = {"class": class_numbers, "time": time_numbers, "denoiser": denoiser_numbers}
        return by_kind[self.model_facts[role]["kind"]](self.card(role))

    def sampler_for(self, den) -> str:
        """The tour's sampler, else (None) the model's own (samplers.default_sampler_of: heun for a flow model)."""
        from fundiff.samplers import default_sampler_of

        return self.sampler or default_sampler_of(den)

    def timesteps(self, den) -> list[int]:
        """As `fundiff <technique>` picks them (fundiff.timesteps.resolve): --steps N when the sizes set it."""
        from fundiff import timesteps as ts

        return ts.for_model(den, steps=self.sizes.steps)

    def test_images(self, n: int, role: str = "class") -> torch.Tensor:
        """The first ``n`` test images of the role's dataset, (n,1,28,28) float32 in [0, 1] on the device."""
        from fundiff import data

        x_test, _ = data.load_split(self._model_dataset(role), self.data_dir, train=False)
        return data.to_unit_float(x_test[:n], self.device)

    def _model_dataset(self, role: str) -> str:
        return self.model_facts[role]["dataset"] or "mnist"

    def x0(self, den, role: str = "class") -> torch.Tensor:
        """Test image 0 in the model's value range, (1,C,H,W): what `fundiff <technique>` uses without --image."""
        from fundiff import images

        kw = dict(channels=den.channels, image_size=den.image_size, value_range=den.value_range)
        return images.dataset_image(self._model_dataset(role), 0, **kw, data_dir=self.data_dir).to(self.device)

    def options(self) -> list[str]:
        """The flags every technique's reproducing command ends with: fp32 (the same on every machine; the CLI's
        default is auto), then :meth:`machine_flags`."""
        return ["--precision", "fp32", *self.machine_flags()]

    def machine_flags(self) -> list[str]:
        """The thread count, and the device when it is not the default."""
        argv = ["--threads", str(torch.get_num_threads())]
        return argv + (["--device", str(self.device)] if self.device != resolve_device("auto") else [])

    def command(self, command: str, role: str, out: Path, *extra: str) -> list[str]:
        """A `fundiff COMMAND --model ROLE'S MODEL ...` line for the sections that are no technique (Part B)."""
        argv = ["fundiff", command, "--model", self.names[role], *extra, "--seed", str(self.seed), "--out", str(out)]
        return argv + self.machine_flags()

    @cached_property
    def model_facts(self) -> dict[str, dict]:
        """Per role: provenance.model_facts (name, kind, dataset, T, weights' SHA-256), for the manifest and resume."""
        return {role: provenance.model_facts(self.names[role], folder) for role, folder in self.folders.items()}
