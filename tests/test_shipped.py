"""The models that ship with fundiff: present, small, documented, and loadable by name."""

import json

import pytest
import torch

from fundiff.backends import runs
from fundiff.classify import load_classifier
from fundiff.provenance import strip_paths

DIFFUSION = {
    "mnist-denoiser": "denoiser",
    "mnist-time": "time",
    "mnist-class": "class",
    "fashion-class": "class",
    "mnist-class-fast": "class",
    "fashion-class-fast": "class",
}
CLASSIFIERS = {"mnist-classifier": "mnist", "fashion-classifier": "fashion-mnist"}


def test_every_shipped_model_is_there_with_a_model_card():
    assert set(DIFFUSION) | set(CLASSIFIERS) <= set(runs.shipped_names())
    for name in runs.shipped_names():
        folder = runs.SHIPPED_DIR / name
        card = json.loads((folder / "card.json").read_text())
        for key in ("command", "preset", "dataset", "wall_s", "machine", "evaluation"):
            assert key in card, (name, key)
        assert card["command"].startswith(("fundiff train", "fundiff distill")), name
        # small: bf16 weights only; the emoji model's class map holds one 16x8x8 map per word and name (5.3M values)
        limit = 20 if name == "emoji" else 8
        assert (folder / "model.safetensors").stat().st_size < limit * 2**20, name


DATA_MEAN = {"mnist": 0.1307, "fashion-mnist": 0.2860}  # mean pixel of each training set


@pytest.mark.parametrize("name,kind", sorted(DIFFUSION.items()))
def test_shipped_diffusion_models_load_by_name(name, kind):
    """Each loads by name; a diffusion model answers at its first and its own last level t = T - 1, where its
    one-step estimate x0_hat from pure noise is about the mean image of its data set (the MMSE answer)."""
    model, cfg = runs.load(name)
    assert model.config.kind == kind and not model.training
    if kind == "denoiser":
        x = torch.rand(2, 1, 28, 28)
        assert model(x).shape == x.shape
        return
    den = runs.load_denoiser(name)
    last = den.schedule.T - 1
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, last, last, last])
    eps = den(x, t, den.encode([""] * 4)).eps
    assert eps.shape == (4, 1, 28, 28) and torch.isfinite(eps).all()
    x0_hat = den.schedule.x0_from_eps(x[1:], t[1:], eps[1:])
    assert float(x0_hat.mean()) == pytest.approx(DATA_MEAN[runs.dataset_of(cfg)], abs=0.06), name


@pytest.mark.parametrize("name,dataset", sorted(CLASSIFIERS.items()))
def test_shipped_classifiers_load_by_name(name, dataset):
    clf, info = load_classifier(name)
    assert info["config"]["train"]["dataset"] == dataset
    assert clf(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_the_shipped_emoji_classifier_reads_the_shipped_test_emoji():
    """One class per emoji (1,643), on 32x32 colour; it reads the shipped test images as their emoji, also with
    noise like a sample's grain (its training augmentation)."""
    from fundiff.images import load_image

    clf, info = load_classifier("emoji-classifier")
    assert info["config"]["train"]["dataset"] == "emoji" and info["config"]["model"]["num_classes"] == 1643
    card = json.loads((runs.SHIPPED_DIR / "emoji-classifier" / "card.json").read_text())
    assert card["evaluation"]["test_accuracy"] > 0.95
    x = torch.cat([load_image(n, channels=3, image_size=32) for n in ("older-man", "camping", "tower")])
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(clf(x).argmax(1), clf(noisy).argmax(1))
        assert clf(x).argmax(1).unique().numel() == 3


def test_shipped_files_hold_no_absolute_path():
    for path in sorted(runs.SHIPPED_DIR.glob("*/*.json")):
        text = path.read_text()
        assert strip_paths(json.loads(text)) == json.loads(text), f"{path} holds an absolute path"


@pytest.mark.slow
@pytest.mark.parametrize("name,grader", [("mnist-class", "mnist-classifier"), ("fashion-class", "fashion-classifier")])
def test_shipped_class_models_meet_a_quality_floor(name, grader):
    """A regression guard: 50 samples (5 per class, CFG 5, 8 DPM-Solver++ steps) read as their class >= 95%."""
    from fundiff.models.classifier import predict

    den = runs.load_denoiser(name)
    clf, _ = load_classifier(grader)
    x = _samples(den, [p for p in den.default_prompts for _ in range(5)], "dpm++")
    target = torch.arange(len(den.default_prompts)).repeat_interleave(5)
    accuracy = float((predict(clf, x) == target).float().mean())
    assert accuracy >= 0.95, f"{name}: {accuracy:.0%} of samples read as their class"


def test_the_shipped_student_reads_as_its_classes_in_its_two_steps():
    """A regression guard for mnist-class-fast: 50 samples (5 per class) at its own default, 2 Euler steps at
    t = 999, 199 with its built-in CFG s=2 (2 model calls a sample, no CFG pair), read as their class >= 95%
    (measured: 99.8% of 500), with less background grain than one step's (README "Few-step students": 0.7%
    against 13%)."""
    from fundiff import samplers
    from fundiff import timesteps as ts
    from fundiff.metrics import background_grain
    from fundiff.models.classifier import predict

    den = runs.load_denoiser("mnist-class-fast")
    clf, _ = load_classifier("mnist-classifier")
    assert den.traits.guidance == 2.0 and ts.for_model(den) == [999, 199]
    prompts = [p for p in den.default_prompts for _ in range(5)]
    x = {
        k: samplers.sample_from_noise(
            den, den.encode(prompts), ts.for_model(den, steps=k), generator=torch.Generator().manual_seed(0)
        ).clamp(0, 1)
        for k in (1, 2)
    }
    target = torch.arange(10).repeat_interleave(5)
    accuracy = float((predict(clf, x[2]) == target).float().mean())
    assert accuracy >= 0.95, f"{accuracy:.0%} of the student's samples read as their class"
    assert background_grain(x[2]) < background_grain(x[1])


def test_the_shipped_fashion_student_reads_as_its_classes_in_its_two_steps():
    """fashion-class-fast at its default (2 steps, CFG s=2 built in): 50 samples read as their class >= 90%
    (measured: 97.8% of 500; its teacher at its default 99.4%)."""
    from fundiff import samplers
    from fundiff import timesteps as ts
    from fundiff.models.classifier import predict

    den = runs.load_denoiser("fashion-class-fast")
    clf, _ = load_classifier("fashion-classifier")
    assert den.traits.guidance == 2.0 and ts.for_model(den) == [999, 199]
    prompts = [p for p in den.default_prompts for _ in range(5)]
    x = samplers.sample_from_noise(
        den, den.encode(prompts), ts.for_model(den), generator=torch.Generator().manual_seed(0)
    ).clamp(0, 1)
    accuracy = float((predict(clf, x) == torch.arange(10).repeat_interleave(5)).float().mean())
    assert accuracy >= 0.9, f"{accuracy:.0%} of the fashion student's samples read as their class"


@pytest.mark.slow
def test_shipped_time_model_makes_every_digit_in_balance():
    """A regression guard for the unconditional model: 100 samples (DPM++, 10 steps: 10 model calls) cover every
    digit, none more than 18 of them, and the classifier is sure (p > 0.9) of >= 65% (a sample that is no digit
    reads unsure). The flow model of this release: counts 6..13, sure of 75% (Heun at 10 steps, 19 calls: the same
    6..13 and 75%); the DDPM model it replaced: counts 1..22, 49%."""
    from fundiff import samplers
    from fundiff import timesteps as ts

    den = runs.load_denoiser("mnist-time")
    clf, _ = load_classifier("mnist-classifier")
    x = samplers.sample_from_noise(
        den,
        den.encode([""] * 100),
        ts.strided(den.schedule.T, steps=10),
        generator=torch.Generator().manual_seed(0),
        sampler="dpm++",
    ).clamp(0, 1)
    with torch.no_grad():
        probs = clf(x).softmax(1)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    sure = float((probs.max(1).values > 0.9).float().mean())
    assert counts.min() >= 4 and counts.max() <= 18, f"class counts of 100 samples: {counts.tolist()}"
    assert sure >= 0.65, f"the classifier is sure of only {sure:.0%} of the samples"


def test_hybrid_filter_defaults_are_chosen_per_dataset():
    """README's filter sweep: sigma 2 on MNIST, 1.5 on Fashion-MNIST (kernel 9); unknown data: the digit defaults."""
    from fundiff import techniques

    assert techniques.defaults_for(runs.load_denoiser("mnist-class")).hybrid_sigma == 2.0
    assert techniques.defaults_for(runs.load_denoiser("mnist-time")).hybrid_sigma == 2.0
    assert techniques.defaults_for(runs.load_denoiser("fashion-class")).hybrid_sigma == 1.5
    from types import SimpleNamespace

    from fundiff.traits import ModelTraits

    unknown = SimpleNamespace(traits=ModelTraits(dataset="emnist"))
    assert techniques.defaults_for(unknown) is techniques.DIGIT_DEFAULTS


def _samples(den, prompts: list[str], sampler: str) -> torch.Tensor:
    """Samples of ``prompts`` in [0, 1]: CFG at the write-up's scale, 8 strided steps of ``sampler``, seed 0."""
    from fundiff import DEFAULT_GUIDANCE, samplers
    from fundiff import timesteps as ts
    from fundiff.guidance import CFG

    model = CFG(den, DEFAULT_GUIDANCE)
    return samplers.sample_from_noise(
        model,
        model.encode(prompts),
        ts.strided(den.schedule.T, steps=8),
        generator=torch.Generator().manual_seed(0),
        sampler=sampler,
    ).clamp(0, 1)


# the shipped emoji test images (src/fundiff/assets/emoji) and the prompts that name them
EMOJI_ASSETS = {"older-man": "older man", "camping": "camping", "tower": "Tokyo tower"}


@pytest.mark.slow
def test_shipped_emoji_model_draws_the_emoji_it_is_asked_for():
    """A regression guard without the dataset: 4 samples (CFG 5, 8 Euler steps) of each shipped test emoji's name
    are nearer in pixels to that emoji than to the others, and within an RMS distance of 0.12 of it: the shipped
    model is at 0.08-0.09, the model before the class map (7.5% prompt fidelity) at 0.14-0.21, drawing blobs of
    the right colours whose nearest training emoji is another (an egg for the old man)."""
    from fundiff.images import load_image

    den = runs.load_denoiser("emoji")
    refs = torch.cat([load_image(name, channels=3, image_size=den.image_size) for name in EMOJI_ASSETS])
    prompts = [p for p in EMOJI_ASSETS.values() for _ in range(4)]
    x = _samples(den, prompts, "euler")
    rms = (x[:, None] - refs[None]).pow(2).mean(dim=(2, 3, 4)).sqrt()  # (samples, test emoji)
    own = torch.arange(len(EMOJI_ASSETS)).repeat_interleave(4)
    assert (rms.argmin(1) == own).all(), rms
    assert float(rms[torch.arange(len(prompts)), own].max()) < 0.12, rms
