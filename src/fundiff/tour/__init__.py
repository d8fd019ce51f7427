"""``fundiff tour``: every section of the write-up in order, as one self-contained HTML report.

Part A plays each technique (:mod:`fundiff.techniques`) on a class-conditioned model (the
shipped ``mnist-class`` or ``fashion-class`` by default); Part B shows the noising process
z = x + sigma eps, the one-step denoiser and its out-of-distribution sigma sweep
(:func:`fundiff.evaluation.denoise_sweep`), and the time- and class-conditioned models -- from
the shipped models' model cards, or from runs that ``train=PRESET`` trains first.

Every section writes its files into ``OUT/sections/ID/`` and, when done, an entry
``OUT/sections/ID/section.json`` (atomically) with the command that reproduces it, its seed,
wall time, the evaluation numbers of its model (read from the model card, never typed in
here) and the SHA-256 of every file. A rerun skips the sections whose entry matches the
run's settings and whose files still have those hashes, so an interrupted tour resumes.
After each section ``OUT/manifest.json`` and ``OUT/index.html`` are rewritten from the entries.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

import fundiff
from fundiff import DEFAULT_GUIDANCE, DEFAULT_SEED, provenance
from fundiff.atomic import atomic_write_json
from fundiff.devices import cpu_name, resolve_device
from fundiff.errors import FundiffError
from fundiff.tour import report

DATASETS = ("mnist", "fashion-mnist")
SEE_README = "see README"  # for numbers no file records


@dataclass(frozen=True)
class Sizes:
    """How much each figure draws: the default run fits 10 minutes on 2 CPU cores; QUICK is for tests."""

    n: int = 4  # samples per prompt (CFG, inpainting, anagrams, hybrids, class samples)
    n_single: int = 8  # samples of the unconditioned figures (sampling, time model)
    steps: int | None = None  # None: the techniques' strided default (stride round(0.03 T)); else --steps N
    i_starts: tuple[int, ...] = (1, 3, 5, 7, 10, 20)  # SDEdit starts (the write-up's)
    i_start: int = 10  # iterative denoising start index
    every: int = 5  # iterative figure: every N-th step shown
    jump_length: int = 5  # RePaint
    resample: int = 5  # RePaint
    n_eval: int = 500  # test images for the sigma sweep's MSE / PSNR (as the shipped card)
    n_show: int = 8  # test images shown in the sweep figures


FULL = Sizes()
QUICK = Sizes(
    n=2, n_single=3, steps=6, i_starts=(1, 3), i_start=2, every=2, jump_length=2, resample=2, n_eval=8, n_show=4
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


CHOICES = {
    "mnist": Choices(
        "mnist-class", ("two", "seven", "four"), "", "3", ("3", "7"), "9", ("6", "9"), "rot180", ("8", "3")
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
    ),
}
PART_B_MODELS = {"time": "mnist-time", "denoiser": "mnist-denoiser"}  # shipped; Part B's class model is --model's


@dataclass(frozen=True)
class TourResult:
    """What a tour did: the report, its manifest, and which sections ran or were complete already."""

    index: Path
    manifest: dict
    ran: tuple[str, ...]
    skipped: tuple[str, ...]


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
    make: Callable[[_Tour, Path], Made]


# -- the tour's state: options, models, inputs -------------------------------------------------------
class _Tour:
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
        """The role's model as a Denoiser (fp32, as the technique commands load it)."""
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
        by_kind = {"class": class_numbers, "time": time_numbers, "denoiser": denoiser_numbers}
        return by_kind[self.model_facts[role]["kind"]](self.card(role))

    def sampler_for(self, den) -> str:
        """The tour's sampler, else (None) the model's own (samplers.default_sampler_of: heun for a flow model)."""
        from fundiff.samplers import default_sampler_of

        return self.sampler or default_sampler_of(den)

    def figure_options(self, den, timesteps: list[int], out: Path) -> dict:
        """The keywords every techniques figure of ``den`` gets the same way in the tour."""
        return dict(timesteps=timesteps, sampler=self.sampler_for(den), out=out, seed=self.seed)

    def timesteps(self, den) -> list[int]:
        """As `fundiff <technique>` picks them: --steps N when the sizes set it, else the write-up's stride."""
        from fundiff import techniques
        from fundiff import timesteps as ts_lib

        T = den.schedule.T
        return (
            techniques.default_timesteps(T) if self.sizes.steps is None else ts_lib.strided(T, steps=self.sizes.steps)
        )

    def test_images(self, n: int, role: str = "class") -> torch.Tensor:
        """The first ``n`` test images of the role's dataset, (n,1,28,28) float32 in [0, 1] on the device."""
        from fundiff import data

        x_test, _ = data.load_split(self._model_dataset(role), self.data_dir, train=False)
        return data.to_unit_float(x_test[:n], self.device)

    def _model_dataset(self, role: str) -> str:
        from fundiff.checkpoints import load_config

        return load_config(self.folders[role]).get("train", {}).get("dataset", "mnist")

    def x0(self, den) -> torch.Tensor:
        """Test image 0 in the model's value range, (1,C,H,W): what `fundiff <technique>` uses without --image."""
        lo, hi = den.value_range
        return lo + (hi - lo) * self.test_images(1)

    def argv(
        self, command: str, role: str, out: Path, *extra: str, steps: bool = True, sampler: bool = False
    ) -> list[str]:
        """The `fundiff` command line that reproduces a section (same model, seed, sizes, threads)."""
        argv = ["fundiff", command, "--model", self.names[role], *extra, "--seed", str(self.seed), "--out", str(out)]
        if (
            command != "denoise-sweep"
        ):  # the tour samples in fp32 (the same on every machine); the CLI's default is auto
            argv += ["--precision", "fp32"]
        if steps and self.sizes.steps is not None:
            argv += ["--steps", str(self.sizes.steps)]
        if sampler and self.sampler is not None:  # the CLI's default is the model's own, as the tour's None
            from fundiff.samplers import default_sampler_of

            argv += ["--sampler", self.sampler] if self.sampler != default_sampler_of(self.denoiser(role)) else []
        argv += ["--threads", str(torch.get_num_threads())]
        if self.device != resolve_device("auto"):
            argv += ["--device", str(self.device)]
        return argv

    @cached_property
    def model_facts(self) -> dict[str, dict]:
        """Per role: provenance.model_facts (name, kind, dataset, T, weights' SHA-256), for the manifest and resume."""
        return {role: provenance.model_facts(self.names[role], folder) for role, folder in self.folders.items()}


# -- evaluation numbers, read from model cards -------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _trained(card: dict) -> list[tuple[str, str]]:
    if not card:
        return [("evaluation", "none recorded for this run folder: run `fundiff evaluate --model RUN`")]
    rows = [("trained with", card.get("command") or "not recorded")]
    if card.get("wall_s") is not None:
        rows.append(("training wall time", f"{card['wall_s']:.0f} s ({card.get('steps')} steps)"))
    return rows


def class_numbers(card: dict) -> list[tuple[str, str]]:
    """Accuracy (by fundiff's classifier) and FID of a class model's card, at its CFG scale and at s = 1."""
    ev = card.get("evaluation") or {}
    if "accuracy" not in ev:
        return _trained(card)
    how = f"{ev.get('n')} samples, {ev.get('steps')} steps, graded by {ev.get('classifier')}"
    rows = [
        (f"class accuracy at CFG s={ev.get('guidance')} ({how})", _pct(ev["accuracy"].get("overall"))),
        (
            f"FID at CFG s={ev.get('guidance')}",
            f"{ev.get('fid', float('nan')):.2f} (floor {ev.get('fid_floor', float('nan')):.2f})",
        ),
    ]
    for entry in ev.get("sweep", []):
        if entry.get("guidance") == 1.0:
            rows.append(
                ("class accuracy / FID without guidance (s=1)", f"{_pct(entry['overall'])} / {entry['fid']:.2f}")
            )
    return rows + _trained(card)


def time_numbers(card: dict) -> list[tuple[str, str]]:
    """FID and the class histogram's extremes of a time model's card."""
    ev = card.get("evaluation") or {}
    if "fid" not in ev:
        return _trained(card)
    rows = [
        (
            f"FID ({ev.get('n')} samples, {ev.get('steps')} steps)",
            f"{ev['fid']:.2f} (floor {ev.get('fid_floor', float('nan')):.2f})",
        )
    ]
    fractions = ev.get("class_fractions") or {}
    if fractions:
        hi, lo = max(fractions, key=fractions.get), min(fractions, key=fractions.get)
        rows.append(
            (
                "classes read by the classifier",
                f"most {hi} ({_pct(fractions[hi])}), fewest {lo} ({_pct(fractions[lo])})",
            )
        )
    return rows + _trained(card)


def denoiser_numbers(card: dict) -> list[tuple[str, str]]:
    """The card's PSNR of the one-step denoiser vs the best Gaussian blur, per sigma."""
    ev = card.get("evaluation") or {}
    rows = [
        (
            f"PSNR at σ={r['sigma']:g} ({ev.get('n')} test images)",
            f"{r['psnr']:.2f} dB (best blur {r['blur_psnr']:.2f} dB)",
        )
        for r in ev.get("rows", [])
        if r.get("sigma", 0) > 0
    ]
    return rows + _trained(card)


def _read_rates() -> tuple[str, str]:
    return (
        "how often the classifier reads each view as intended",
        f"{SEE_README} (benchmarks/anagram_hybrid_rates.py)",
    )


# -- Part A: the techniques on a class-conditioned model ---------------------------------------------
def _a_forward(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den = t.denoiser("class")
    fig = techniques.noise_figure(den, t.x0(den), out=out, seed=t.seed)
    return Made(list(fig.paths), t.argv("noise", "class", out, steps=False))


def _a_blur(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den = t.denoiser("class")
    fig = techniques.blur_figure(den, t.x0(den), kernel_size=5, sigma=1.0, out=out, seed=t.seed)
    argv = t.argv("blur", "class", out, "--kernel-size", "5", "--sigma", "1.0", steps=False)
    return Made(list(fig.paths), argv)


def _a_denoise(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, s = t.denoiser("class"), t.sizes
    x0, ts = t.x0(den), t.timesteps(den)
    one = techniques.one_step_figure(den, x0, prompt="", guidance=1.0, out=out, seed=t.seed)
    it = techniques.iterative_figure(
        den, x0, timesteps=ts, sampler=t.sampler_for(den), i_start=s.i_start, every=s.every, prompt="", guidance=1.0,
        out=out, seed=t.seed,
    )  # fmt: skip
    extra = ("--i-start", str(s.i_start), "--every", str(s.every), "--guidance", "1")
    argv = t.argv("denoise", "class", out, *extra, sampler=True)
    return Made(list(one.paths + it.paths), argv, timesteps=ts, guidance=[1.0])


def _a_sampling(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n = t.denoiser("class"), t.sizes.n_single
    ts = t.timesteps(den)
    fig = techniques.sampling_figure(
        den,
        [""],
        n=n,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    argv = t.argv("generate", "class", out, "--prompt", "", "--n", str(n), sampler=True)
    return Made(list(fig.paths), argv, timesteps=ts, guidance=[1.0])


def _a_cfg(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n, prompts = t.denoiser("class"), t.sizes.n, list(t.choices.cfg)
    ts = t.timesteps(den)
    fig = techniques.sampling_figure(
        den,
        prompts,
        n=n,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    argv = t.argv(
        "generate",
        "class",
        out,
        "--prompt",
        *prompts,
        "--n",
        str(n),
        "--guidance",
        f"{DEFAULT_GUIDANCE:g}",
        sampler=True,
    )
    return Made(list(fig.paths), argv, timesteps=ts, guidance=[1.0, DEFAULT_GUIDANCE])


def _sdedit(t: _Tour, out: Path, x0: torch.Tensor, prompt: str, name: str, extra: Sequence[str]) -> Made:
    from fundiff import techniques

    den, starts = t.denoiser("class"), t.sizes.i_starts
    ts = t.timesteps(den)
    fig = techniques.sdedit_figure(
        den,
        x0,
        i_starts=starts,
        prompt=prompt,
        guidance=DEFAULT_GUIDANCE,
        timesteps=ts,
        sampler=t.sampler_for(den),
        name=name,
        out=out,
        seed=t.seed,
    )
    argv = t.argv("sdedit", "class", out, *extra, "--prompt", prompt, "--i-start", *map(str, starts), sampler=True)
    guidance = [DEFAULT_GUIDANCE] if prompt.strip() else [1.0]
    return Made(list(fig.paths), argv, timesteps=ts, guidance=guidance)


def _a_sdedit(t: _Tour, out: Path) -> Made:
    return _sdedit(t, out, t.x0(t.denoiser("class")), "", "sdedit", ())


def _a_handdrawn(t: _Tour, out: Path) -> Made:
    from fundiff import images

    den, names = t.denoiser("class"), list(t.choices.drawings)
    kw = dict(channels=den.channels, image_size=den.image_size, value_range=den.value_range, fit="pad", invert="auto")
    x0 = torch.cat([images.load_image(p, **kw) for p in names]).to(den.device)
    return _sdedit(t, out, x0, t.choices.drawn_prompt, "handdrawn", ("--image", *names))


def _a_img2img(t: _Tour, out: Path) -> Made:
    return _sdedit(t, out, t.x0(t.denoiser("class")), t.choices.img2img, "sdedit", ())


def _inpaint(t: _Tour, out: Path, method: str) -> Made:
    from fundiff import images, techniques

    den, s, prompt = t.denoiser("class"), t.sizes, t.choices.inpaint
    ts = t.timesteps(den)
    mask = images.mask_preset("top-half", den.image_size).to(den.device)
    fig = techniques.inpaint_figure(
        den,
        t.x0(den),
        mask,
        n=s.n,
        method=method,
        jump_length=s.jump_length,
        resample=s.resample,
        prompt=prompt,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    extra = ["--mask-preset", "top-half", "--prompt", prompt, "--n", str(s.n), "--method", method]
    if method == "repaint":
        extra += ["--jump-length", str(s.jump_length), "--resample", str(s.resample)]
    return Made(
        list(fig.paths),
        t.argv("inpaint", "class", out, *extra, sampler=True),
        timesteps=ts,
        guidance=[DEFAULT_GUIDANCE],
    )


def _a_inpaint(t: _Tour, out: Path) -> Made:
    return _inpaint(t, out, "replace")


def _a_repaint(t: _Tour, out: Path) -> Made:
    return _inpaint(t, out, "repaint")


def _a_anagram(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n, prompts, view = t.denoiser("class"), t.sizes.n, list(t.choices.anagram), t.choices.view
    ts = t.timesteps(den)
    fig = techniques.anagram_figure(
        den,
        prompts,
        ["identity", view],
        n=n,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    argv = t.argv("anagram", "class", out, "--prompts", *prompts, "--view", view, "--n", str(n), sampler=True)
    return Made(list(fig.paths), argv, [_read_rates()], timesteps=ts, guidance=[DEFAULT_GUIDANCE])


def _a_hybrid(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n, (low, high) = t.denoiser("class"), t.sizes.n, t.choices.hybrid
    ts = t.timesteps(den)
    d = techniques.defaults_for(den)  # the filter chosen per dataset by measurement
    fig = techniques.hybrid_figure(
        den,
        low,
        high,
        kernel_size=d.hybrid_kernel_size,
        sigma=d.hybrid_sigma,
        n=n,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    extra = ("--low", low, "--high", high, "--kernel-size", str(d.hybrid_kernel_size), "--sigma", f"{d.hybrid_sigma:g}")
    extra += ("--n", str(n))
    return Made(
        list(fig.paths),
        t.argv("hybrid", "class", out, *extra, sampler=True),
        [_read_rates()],
        timesteps=ts,
        guidance=[DEFAULT_GUIDANCE],
    )


# -- Part B: the models and how they were trained -----------------------------------------------------
def _sweep(t: _Tour, out: Path, sigmas: Sequence[float], n_eval: int):
    """``fundiff denoise-sweep``'s measurement: (x (N,1,H,W) in [0,1], rows, {sigma: (noisy, denoised)})."""
    from fundiff.evaluation import denoise_sweep

    model = t.net("denoiser")
    if model.config.kind != "denoiser":
        raise FundiffError(f"{t.names['denoiser']} is a {model.config.kind!r} model; Part B needs a one-step denoiser")
    x = t.test_images(max(n_eval, t.sizes.n_show), "denoiser")
    g = torch.Generator(device=t.device).manual_seed(t.seed)
    rows, images = denoise_sweep(model, x, sigmas, generator=g)
    out.mkdir(parents=True, exist_ok=True)
    return x, rows, images


def _sweep_argv(t: _Tour, out: Path, n_eval: int, *extra: str) -> list[str]:
    argv = t.argv(
        "denoise-sweep", "denoiser", out, *extra, "--n-eval", str(n_eval), "--n-show", str(t.sizes.n_show), steps=False
    )
    return argv


def _loss_curve(t: _Tour, role: str, out: Path) -> tuple[list[Path], str]:
    """The run's loss curve when its losses are recorded (state.json), else a note saying what the card holds."""
    from fundiff import io

    state = t.folders[role] / "state.json"
    if state.is_file():
        losses = json.loads(state.read_text())["losses"]
        return [io.plot_loss(losses, out / "loss.png", title=f"{t.names[role]}: training loss")], ""
    card = t.card(role)
    return [], (
        f"The loss history is not shipped with {t.names[role]}: its card records the final loss "
        f"{card.get('final_loss', float('nan')):.4f} after {card.get('steps')} steps; "
        "`fundiff tour --train quick` retrains and plots the curve."
    )


def _b_noising(t: _Tour, out: Path) -> Made:
    from fundiff import io
    from fundiff.evaluation import SWEEP_SIGMAS

    n = t.sizes.n_show
    _, _, images = _sweep(t, out, SWEEP_SIGMAS, n)
    fig = io.save_labeled_grid(
        [images[float(s)][0][:n].clamp(0, 1) for s in SWEEP_SIGMAS],
        [f"σ={s:g}" for s in SWEEP_SIGMAS],
        out / "noising.png",
        title="z = x + σ ε",
    )
    return Made([fig], _sweep_argv(t, out, n))


def _b_denoiser(t: _Tour, out: Path) -> Made:
    from fundiff import io

    sigma = float(t.card("denoiser").get("train", {}).get("sigma", 0.5))
    x, rows, images = _sweep(t, out, [sigma], t.sizes.n_eval)
    n, (z, den) = t.sizes.n_show, images[sigma]
    fig = io.save_labeled_grid(
        [x[:n], z[:n].clamp(0, 1), den[:n]],
        ["clean", f"noisy σ={sigma:g}", "denoised"],
        out / f"sigma_{sigma:g}.png",
        title=f"one-step denoiser, σ = {sigma:g}",
    )
    curve, note = _loss_curve(t, "denoiser", out)
    measured = (f"PSNR at σ={sigma:g}, this run ({len(x)} test images)", f"{rows[0].psnr:.2f} dB")
    argv = _sweep_argv(t, out, t.sizes.n_eval, "--sigmas", f"{sigma:g}")
    return Made(curve + [fig], argv, [measured], note)


def _b_sweep(t: _Tour, out: Path) -> Made:
    from fundiff import io
    from fundiff.evaluation import SWEEP_SIGMAS

    x, rows, images = _sweep(t, out, SWEEP_SIGMAS, t.sizes.n_eval)
    n = t.sizes.n_show
    fig = io.save_labeled_grid(
        [images[float(s)][1][:n] for s in SWEEP_SIGMAS],
        [f"σ={s:g}" for s in SWEEP_SIGMAS],
        out / "sweep.png",
        title="denoised outputs per σ (trained at σ=%g)" % t.card("denoiser").get("train", {}).get("sigma", 0.5),
    )
    atomic_write_json(out / "metrics.json", {"n_eval": len(x), "seed": t.seed, "rows": [r.__dict__ for r in rows]})
    measured = [
        (f"MSE / PSNR at σ={r.sigma:g}, this run ({len(x)} images)", f"{r.mse:.5f} / {r.psnr:.2f} dB") for r in rows
    ]
    return Made([fig], _sweep_argv(t, out, t.sizes.n_eval), measured)


def _b_time(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n = t.denoiser("time"), t.sizes.n_single
    ts = t.timesteps(den)
    curve, note = _loss_curve(t, "time", out)
    fig = techniques.sampling_figure(
        den,
        [""],
        n=n,
        **t.figure_options(den, ts, out),
    )
    argv = t.argv("generate", "time", out, "--n", str(n), sampler=True)
    return Made(curve + list(fig.paths), argv, [], note, ts, [1.0])


def _b_class(t: _Tour, out: Path) -> Made:
    from fundiff import techniques

    den, n = t.denoiser("class-b"), t.sizes.n
    ts = t.timesteps(den)
    curve, note = _loss_curve(t, "class-b", out)
    fig = techniques.sampling_figure(
        den,
        list(den.class_names),
        n=n,
        guidance=DEFAULT_GUIDANCE,
        **t.figure_options(den, ts, out),
    )
    argv = t.argv("generate", "class-b", out, "--n", str(n), "--guidance", f"{DEFAULT_GUIDANCE:g}", sampler=True)
    return Made(curve + list(fig.paths), argv, [], note, ts, [1.0, DEFAULT_GUIDANCE])


SECTIONS: tuple[Section, ...] = (
    Section(
        "a-forward", "A", "1.1 The forward process",
        "A test image noised by q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) at the write-up's t = 250, 500, 750 "
        "of 1000, scaled to the model's T.",
        "class", _a_forward,
    ),
    Section(
        "a-blur", "A", "1.2 Classical denoising",
        "The same noisy images smoothed with a Gaussian blur (kernel 5, σ = 1): the noise fades, "
        "and so does the digit.",
        "class", _a_blur,
    ),
    Section(
        "a-denoise", "A", "1.3–1.4 One-step and iterative denoising",
        "One-step estimates x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, then strided iterative denoising from "
        "timesteps[i_start], compared with blur.",
        "class", _a_denoise,
    ),
    Section(
        "a-sampling", "A", "1.5 Sampling",
        "Samples from pure noise x_T ~ N(0, I) with the null prompt, by strided steps: digit-like, "
        "but not always a clear digit.",
        "class", _a_sampling,
    ),
    Section(
        "a-cfg", "A", "1.6 Classifier-free guidance",
        "The same noise sampled per prompt without guidance (s = 1) and with CFG s = 5: "
        "ε = ε_u + s (ε_c − ε_u) gives cleaner, more typical images.",
        "class", _a_cfg,
    ),
    Section(
        "a-sdedit", "A", "1.7 SDEdit (image-to-image translation)",
        "The test image noised to timesteps[i_start] and denoised with the null prompt: a small i_start "
        "invents a new image, a large one keeps the input.",
        "class", _a_sdedit,
    ),
    Section(
        "a-handdrawn", "A", "1.7.1 Editing hand-drawn images",
        "fundiff's shipped drawings (resized, inverted to light-on-dark) projected onto the data manifold by SDEdit.",
        "class", _a_handdrawn,
    ),
    Section(
        "a-inpaint", "A", "1.7.2 Inpainting",
        "New content where the mask is white; after every step the rest is replaced by the original noised "
        "to t′ (the write-up's method).",
        "class", _a_inpaint,
    ),
    Section(
        "a-repaint", "A", "1.7.2 Inpainting with RePaint",
        "The same with RePaint's resampling (Lugmayr et al. 2022): jumping back up a few steps lets the new "
        "part agree with the kept part.",
        "class", _a_repaint,
    ),
    Section(
        "a-img2img", "A", "1.7.3 Conditioned image-to-image translation",
        "SDEdit of the test image towards a prompt with CFG s = 5: the edit bends the input towards the "
        "prompt's class.",
        "class", _a_img2img,
    ),
    Section(
        "a-anagram", "A", "1.8 Visual anagrams",
        "One image that shows one prompt as is and another under a view: "
        "ε = mean_i V_i⁻¹(ε(V_i(x_t), p_i)) (Geng et al. 2024).",
        "class", _a_anagram,
    ),
    Section(
        "a-hybrid", "A", "1.9 Hybrid images",
        "Low frequencies of one prompt, high frequencies of another: "
        "ε = lowpass(ε(x_t, low)) + highpass(ε(x_t, high)) (factorized diffusion, Geng et al. 2024).",
        "class", _a_hybrid,
    ),
    Section(
        "b-noising", "B", "B 1.2 The noising process",
        "Test digits noised as z = x + σ ε at σ ∈ {0, 0.2, 0.4, 0.5, 0.6, 0.8, 1}: the one-step denoiser's "
        "training inputs (σ = 0.5) and beyond.",
        "denoiser", _b_noising,
    ),
    Section(
        "b-denoiser", "B", "B 1.2.1 Training the one-step denoiser",
        "The UNet trained to map z (σ = 0.5) back to x with an L2 loss, and its results on test digits.",
        "denoiser", _b_denoiser,
    ),
    Section(
        "b-sweep", "B", "B 1.2.2 Out-of-distribution noise levels",
        "The same denoiser on σ it was not trained for; its PSNR against the best Gaussian blur per σ "
        "is in the table.",
        "denoiser", _b_sweep,
    ),
    Section(
        "b-time", "B", "B 2.1–2.3 The time-conditioned UNet",
        "The time-conditioned UNet sampled from pure noise: digits of every class, in no chosen order. The "
        "write-up trains it as DDPM, ε(x_t, t) with T = 300 (--preset paper); the shipped model is trained by "
        "flow matching (--preset flow, the course's newer Part B), as its card below says.",
        "time", _b_time,
    ),
    Section(
        "b-class", "B", "B 2.4–2.5 The class-conditioned UNet",
        "ε(x_t, t, c) trained with 10% of class vectors dropped, sampled per class without and with CFG s = 5.",
        "class-b", _b_class,
    ),
)  # fmt: skip
SECTION_IDS = tuple(s.id for s in SECTIONS)


# -- running sections, resuming ----------------------------------------------------------------------
def _key(t: _Tour, sec: Section) -> dict:
    """Everything a section's outputs depend on (as JSON reads it back): a saved entry with another key is stale."""
    key = {
        "fundiff": fundiff.__version__,
        "section": sec.id,
        "model_sha256": t.model_facts[sec.role]["sha256"],
        "seed": t.seed,
        "sizes": asdict(t.sizes),
        "sampler": t.sampler,
        "choices": asdict(t.choices),
        "threads": torch.get_num_threads(),
        "device": str(t.device),
    }
    return json.loads(json.dumps(key))


def _complete(t: _Tour, sec: Section, entry_path: Path) -> dict | None:
    """The saved entry of ``sec`` when it matches this run and every file still has its hash, else None."""
    if not entry_path.is_file():
        return None
    try:
        entry = json.loads(entry_path.read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != _key(t, sec) or not entry.get("files"):
        return None
    if not set(entry.get("figures", [])) <= set(entry["files"]):
        return None
    return entry if provenance.files_intact(t.out, entry["files"]) else None


def _run_section(t: _Tour, sec: Section) -> dict:
    """Run one section into OUT/sections/ID (emptied first) and write its entry atomically."""
    folder = t.out / "sections" / sec.id
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    made = sec.make(t, folder)
    wall = time.perf_counter() - start
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != "section.json"]
    entry = {
        "key": _key(t, sec),
        "id": sec.id,
        "part": sec.part,
        "title": sec.title,
        "caption": sec.caption,
        "command": shlex.join(made.argv),
        "seed": t.seed,
        "wall_s": round(wall, 2),
        "model": t.names[sec.role],
        "sampler": t.sampler_for(t.denoiser(sec.role)) if made.timesteps is not None else None,
        "timesteps": made.timesteps,
        "guidance": made.guidance,
        "numbers": [list(row) for row in made.numbers + t.card_numbers(sec.role)],
        "note": made.note,
        "figures": [Path(p).relative_to(t.out).as_posix() for p in made.figures],
        "files": provenance.hash_files(t.out, files),
    }
    atomic_write_json(folder / "section.json", entry)
    return entry


# -- the manifest ------------------------------------------------------------------------------------
def _manifest(t: _Tour, entries: list[dict], command: str, wall_s: float) -> dict:
    """manifest.json's content (provenance.manifest) for the entries run so far."""
    sampler = t.sampler or ", ".join(sorted({e["sampler"] for e in entries if e.get("sampler")})) or None
    return provenance.manifest(
        command=command, device=t.device, seed=t.seed, sampler=sampler, sizes=asdict(t.sizes), dataset=t.dataset,
        models=t.model_facts, sections=entries, wall_s=wall_s,
    )  # fmt: skip


# -- --train PRESET: retrain Part B's models first -----------------------------------------------------
def _total_steps(cfg, n_images: int) -> int:
    total = -(-n_images // cfg.batch_size) * cfg.epochs
    return total if cfg.max_steps is None else min(total, cfg.max_steps)


def estimate_train_seconds(cfg, data: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> float:
    """Seconds ``cfg`` will train here: the wall time of a 2-step run (start-up included), plus
    (wall of 5 steps - wall of 2 steps) / 3 for each further step. The probes train in a temporary folder.
    """
    import tempfile

    from fundiff import training

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in (2, 5):
            probe = replace(cfg, max_steps=k, save_every=0, sample_epochs=())
            walls.append(training.train(probe, Path(tmp) / str(k), data=data, device=device, progress=False).wall_s)
    per_step = max(walls[1] - walls[0], 0.0) / 3 or walls[1] / 5
    return walls[0] + per_step * max(_total_steps(cfg, len(data[0])) - 2, 0)  # start-up + 2 steps, then the rest


def _train_part_b(
    out: Path, preset: str, dataset: str, *, seed: int, device: torch.device, data_dir, log
) -> dict[str, str]:
    """Train a denoiser, a time and a class model with ``preset`` into OUT/runs/ (resuming unfinished runs).

    Says up front how long it will take here. Returns {role: run folder} for Part B.
    """
    from fundiff import data, training

    images, labels = data.load_split(dataset, data_dir, train=True)
    kinds = {"denoiser": "denoiser", "time": "time", "class-b": "class"}
    cfgs = {role: training.preset_config(preset, kind, dataset=dataset, seed=seed) for role, kind in kinds.items()}
    folders = {role: out / "runs" / f"{dataset}-{cfg.kind}-{preset}" for role, cfg in cfgs.items()}
    todo = {r: c for r, c in cfgs.items() if _steps_done(folders[r]) < _total_steps(c, len(images))}
    if todo:
        est = sum(estimate_train_seconds(c, (images, labels), device) for c in todo.values())
        log(
            f"training {', '.join(c.kind for c in todo.values())} with --preset {preset}: about {est / 60:.1f} min "
            f"on this machine ({cpu_name()}, {torch.get_num_threads()} threads; estimated from timed steps)"
        )
    for role, cfg in todo.items():
        folder = folders[role]
        argv = ["train", cfg.kind, "--preset", preset, "--dataset", dataset, "--out", str(folder)]
        command = "fundiff " + provenance.portable_command(argv + ["--threads", str(torch.get_num_threads())])
        result = training.train(
            cfg,
            folder,
            data=(images, labels),
            device=device,
            resume=(folder / "state.json").is_file(),
            progress=False,
            extra_config={**provenance.run_info(cfg.precision, device), "command": command},
        )
        log(f"trained {cfg.kind}: {result.step} steps in {result.wall_s:.0f} s -> {folder}")
    return {role: str(folder) for role, folder in folders.items()}


def _steps_done(folder: Path) -> int:
    state = folder / "state.json"
    return len(json.loads(state.read_text()).get("losses", [])) if state.is_file() else 0


# -- the tour ------------------------------------------------------------------------------------------
def _resolve_class_model(model: str | None, dataset: str | None) -> tuple[str, str]:
    """(Part A's model, its dataset) from --model / --dataset, with one-line errors for what cannot work."""
    from fundiff.backends import runs
    from fundiff.checkpoints import load_config

    if dataset is not None and dataset not in DATASETS:
        raise FundiffError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    model = model or CHOICES[dataset or "mnist"].model
    from fundiff.backends.deepfloyd import is_hub_id

    path = Path(model)
    if is_hub_id(model) or (path.is_dir() and runs.backend_for(path).name != "fundiff"):
        raise FundiffError(
            f"{model} is not a fundiff model folder or shipped name; the tour runs on fundiff's own models for "
            "now (DeepFloyd IF works with the Part A commands): pass a shipped name (mnist-class, fashion-class) "
            "or a `fundiff train class` run"
        )
    cfg = load_config(runs.resolve(model))
    kind = cfg.get("model", {}).get("kind")
    if kind != "class":
        raise FundiffError(
            f"{model} is a {kind!r} model; the tour's Part A needs a class-conditioned model (`fundiff train class`)"
        )
    own = cfg.get("train", {}).get("dataset", "mnist")
    if dataset is not None and dataset != own:
        raise FundiffError(f"{model} was trained on {own}, not {dataset}; drop --dataset or pass a {dataset} model")
    if own not in CHOICES:
        raise FundiffError(f"{model} was trained on {own!r}; the tour knows {', '.join(CHOICES)}")
    return model, own


def run_tour(
    out: str | Path = "out/tour",
    *,
    model: str | None = None,
    dataset: str | None = None,
    train: str | None = None,
    time_model: str | None = None,
    denoiser_model: str | None = None,
    seed: int = DEFAULT_SEED,
    sampler: str | None = None,
    device: str = "auto",
    quick: bool = False,
    sections: Sequence[str] | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> TourResult:
    """Run the write-up's sections in order into ``out`` and write ``out/index.html`` and ``out/manifest.json``.

    model: Part A's class-conditioned model (shipped name or run folder; default ``mnist-class``, or
    ``fashion-class`` for dataset "fashion-mnist"); it is also Part B's class model unless ``train``
    names a preset (see ``fundiff.training.PRESETS``) to train a denoiser, a time and a class model
    first. time_model / denoiser_model: Part B's (default: the shipped ``mnist-time``, ``mnist-denoiser``).
    quick: the small :data:`QUICK` sizes (tests). sections: a subset of :data:`SECTION_IDS` (run in
    tour order; the report and manifest then hold only those).
    Uses torch's current thread count (the CLI sets it from --threads). Sections complete from an
    earlier run with the same settings are skipped (``TourResult.skipped``).
    """
    from fundiff.samplers import get_sampler

    start = time.perf_counter()
    if sampler is not None:  # None: each model's own (heun for a flow-matching model, else ddpm)
        get_sampler(sampler)  # unknown names fail here, before any work
    unknown = set(sections or ()) - set(SECTION_IDS)
    if unknown:
        raise FundiffError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTION_IDS)}")
    model, dataset = _resolve_class_model(model, dataset)
    out, dev = Path(out), resolve_device(device)
    models = {"class": model, "class-b": model, **PART_B_MODELS}
    models.update({k: v for k, v in (("time", time_model), ("denoiser", denoiser_model)) if v})
    if train is not None:
        models.update(_train_part_b(out, train, dataset, seed=seed, device=dev, data_dir=data_dir, log=log))
    tour = _Tour(
        out,
        models,
        dataset=dataset,
        sizes=QUICK if quick else FULL,
        seed=seed,
        sampler=sampler,
        device=dev,
        data_dir=data_dir,
    )
    chosen = [s for s in SECTIONS if sections is None or s.id in sections]
    if not chosen:
        raise FundiffError(f"no sections chosen; choose from {', '.join(SECTION_IDS)}")
    log(f"fundiff tour: {len(chosen)} sections into {out} on {model} ({dev}, {torch.get_num_threads()} threads)")
    result = _run_sections(tour, chosen, _tour_command(out, model, dataset, train, sampler), start, log)
    log(f"report: {result.index} ({time.perf_counter() - start:.0f} s)")
    return result


def _run_sections(t: _Tour, chosen: list[Section], command: str, start: float, log) -> TourResult:
    """Run or skip each section in order, rewriting manifest.json and index.html after each one."""
    entries, ran, skipped = [], [], []
    for i, sec in enumerate(chosen, 1):
        entry = _complete(t, sec, t.out / "sections" / sec.id / "section.json")
        if entry is None:
            entry = _run_section(t, sec)
            ran.append(sec.id)
            log(f"[{i}/{len(chosen)}] {sec.title}: {entry['wall_s']:.1f} s, {len(entry['files'])} files")
        else:
            entry.update(id=sec.id, part=sec.part, title=sec.title, caption=sec.caption)  # wording may have changed
            skipped.append(sec.id)
            log(f"[{i}/{len(chosen)}] {sec.title}: complete from an earlier run, skipped")
        entries.append(entry)
        manifest = _manifest(t, entries, command, time.perf_counter() - start)
        report.write_manifest(t.out, manifest)
        index = report.write_html(t.out, manifest)
    return TourResult(index, manifest, tuple(ran), tuple(skipped))


def _tour_command(out: Path, model: str, dataset: str, train: str | None, sampler: str | None) -> str:
    argv = ["tour", "--out", str(out), "--model", model, "--dataset", dataset]
    argv += ["--train", train] if train else []
    argv += ["--sampler", sampler] if sampler else []
    return "fundiff " + provenance.portable_command(argv + ["--threads", str(torch.get_num_threads())])
