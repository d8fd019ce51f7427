"""Technique specs: the machinery that says, once, which parameters a figure function takes.

A :class:`Technique` names a figure function of :mod:`fundiff.techniques` and lists its :class:`Param` s
(name, kind, help); each default is written once, in the figure function's signature, and read from there
(:meth:`Technique.default`). A default that depends on the model is ``None`` in the signature and a
:class:`PerModel` in the spec: the figure function resolves it with the very helper the spec names, so the
Python API, the CLI (``fundiff <technique>``, built from the spec by :mod:`fundiff.cli.techniques`), the tour
and the web UI (controls built from the spec) run the same thing and say the same defaults.

A parameter's kind (:mod:`fundiff.kinds`, re-exported here: :class:`Number`, :class:`Text`, :class:`Choice`,
:class:`ViewName`, :class:`ImageFile`) checks a value given as text or as a Python value, with one-line errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from fundiff import DEFAULT_GUIDANCE
from fundiff import techniques as t
from fundiff import timesteps as ts_lib
from fundiff.edits import INPAINT_METHODS
from fundiff.errors import FundiffError
from fundiff.guidance import scale_for
from fundiff.kinds import Choice, ImageFile, Kind, Number, Text, ViewName

_EMPTY = inspect.Parameter.empty


# -- parameters and their defaults -----------------------------------------------------------------------
@dataclass(frozen=True)
class PerModel:
    """A default that depends on the model: ``of(denoiser)``, and ``text``, how --help and the UI describe it.

    ``of`` must be the helper the figure function itself calls for a ``None`` argument (one resolution).
    ``field``: the :class:`~fundiff.traits.TechniqueDefaults` field it reads, if any, so that a front-end can
    list its value per model family (:func:`describe_defaults`)."""

    of: Callable[[Any], Any]
    text: str
    field: str | None = None
    index: int | None = None  # the item of a tuple field (hybrid_prompts[0])

    def value_in(self, defaults: Any) -> Any:
        """This default's value in a TechniqueDefaults ``defaults`` (its ``field``, item ``index``)."""
        value = getattr(defaults, self.field)
        return value if self.index is None else value[self.index]


@dataclass(frozen=True)
class Param:
    """One keyword of a figure function, as every front-end shows it.

    name: the keyword; flag: the CLI flag (default ``--name`` with dashes); many: a list (``nargs="+"``);
    per_model: the default when the signature's is None; none: instead, what leaving out an optional argument
    (None in the signature, no per-model value) means, as --help says it; ui: shown as a control in the web UI."""

    name: str
    kind: Kind
    help: str
    flag: str = ""
    many: bool = False
    per_model: PerModel | None = None
    ui: bool = True
    metavar: str | None = None
    none: str = ""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` checked by the kind; a list for ``many`` (a str or number alone becomes a one-item list)."""
        if not self.many:
            try:
                return self.kind.check(value)
            except FundiffError as e:
                raise FundiffError(f"{self.cli_flag}: {e}") from None
        items = [value] if isinstance(value, (str, int, float)) else list(value)
        if not items:
            raise FundiffError(f"{self.cli_flag}: give at least one value")
        try:
            return [self.kind.check(v) for v in items]
        except FundiffError as e:
            raise FundiffError(f"{self.cli_flag}: {e}") from None

    def as_flags(self, value: Any) -> list[str]:
        """The CLI tokens that give ``value``: ["--i-start", "1", "3"], ["--prompt", ""]."""
        values = value if self.many else [value]
        return [self.cli_flag, *(_token(v) for v in values)]


def _token(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- techniques ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Technique:
    """A Part A technique: its figure function, what it reads, and its parameters.

    name: the CLI command and the UI tab id. inputs: "" (none), "image", "images" or "image+mask" (what the
    front-ends read with fundiff.images before calling the figure). samples: it runs the reverse process, so it
    takes ``timesteps`` and ``sampler`` (None: the model's own) and a step hook ``on_step``."""

    name: str
    figure: Callable[..., Any]
    summary: str
    description: str
    params: tuple[Param, ...]
    inputs: str = ""
    samples: bool = True
    # what the CLI adds: "timesteps": False (no --steps / --stride: setup has its own), "upscale": True (IF stage II)
    extra: dict = field(default_factory=dict)
    # refuses values that do not go together (given: name -> checked value), before any model loads
    consistent: Callable[[dict[str, Any]], None] | None = None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise FundiffError(f"{self.name} has no parameter {name!r}; it has {', '.join(p.name for p in self.params)}")

    def default(self, name: str, denoiser=None) -> Any:
        """The default of ``name``: the figure signature's, else (None there) the spec's per-model default for
        ``denoiser`` (None: not resolved, returns None)."""
        written = inspect.signature(self.figure).parameters[name].default
        if written is _EMPTY:
            raise FundiffError(f"{self.name}'s {name} has no default")
        if written is None and self.param(name).per_model is not None and denoiser is not None:
            return self.param(name).per_model.of(denoiser)
        return list(written) if isinstance(written, tuple) else written

    def default_text(self, name: str) -> str:
        """How --help and the UI describe the default of ``name``."""
        p = self.param(name)
        written = inspect.signature(self.figure).parameters[name].default
        if written is None and p.per_model is not None:
            return p.per_model.text
        if written is None:
            return p.none or "none"
        values = written if isinstance(written, (list, tuple)) else [written]
        return " ".join(_token(v) if v != "" else "''" for v in values)

    def check(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` (name -> value; None = the default) with every value checked, and checked together
        (``consistent``); unknown names are an error."""
        known = {p.name for p in self.params}
        unknown = set(given) - known
        if unknown:
            takes = ", ".join(p.name for p in self.params)
            raise FundiffError(f"{self.name} takes no {', '.join(sorted(unknown))}; it takes {takes}")
        values = {k: self.param(k).check(v) for k, v in given.items() if v is not None}
        if self.consistent is not None:
            self.consistent(values)
        return values

    def resolve(self, denoiser, given: dict[str, Any]) -> dict[str, Any]:
        """Every parameter's value for ``denoiser``: the checked ``given`` ones, the defaults for the rest
        (per model where the spec says so) -- what the figure function will use."""
        values = self.check(given)
        return {p.name: values[p.name] if p.name in values else self.default(p.name, denoiser) for p in self.params}

    def run(self, denoiser, inputs: Sequence[Any] = (), given: dict[str, Any] | None = None, **options):
        """The figure: ``figure(denoiser, *inputs, **checked given, **options)`` (options: timesteps, sampler,
        out, seed, on_step, upscale, ...). Values not given are resolved by the figure function itself."""
        return self.figure(denoiser, *inputs, **self.check(given or {}), **options)

    def flags(self, given: dict[str, Any]) -> list[str]:
        """The CLI flags for the parameters in ``given`` (in the spec's order; None values left out)."""
        values = self.check(given)
        return [tok for p in self.params if p.name in values for tok in p.as_flags(values[p.name])]


def technique_command(
    technique: Technique,
    model: str,
    given: dict[str, Any],
    *,
    inputs: Sequence[str] = (),
    seed: int,
    out: str,
    steps: int | None = None,
    sampler: str | None = None,
    options: Sequence[str] = (),
) -> list[str]:
    """The ``fundiff NAME ...`` argv that reproduces a technique run: the model, the input flags (``--image P``,
    ``--mask M``, ...), the given parameters, seed, out, ``--steps`` and ``--sampler`` when they differ from the
    model's defaults (None), then ``options`` (precision, threads, device)."""
    argv = ["fundiff", technique.name, "--model", model, *inputs, *technique.flags(given)]
    argv += ["--seed", str(seed), "--out", str(out)]
    argv += ["--steps", str(steps)] if steps is not None and technique.samples else []
    argv += ["--sampler", sampler] if sampler is not None and technique.samples else []
    return argv + list(options)


# -- the write-up's Part A techniques ----------------------------------------------------------------------
def _defaults(field: str, index: int | None = None) -> PerModel:
    """A default read from the model's TechniqueDefaults (techniques.defaults_for, as the figure functions do);
    a front-end lists it per model family with :func:`describe_defaults`."""

    text = f"the model's {field}" + ("" if index is None else f"[{index}]")
    return PerModel(lambda den: PerModel(None, text, field, index).value_in(t.defaults_for(den)), text, field, index)


_INT1 = Number(int, low=1, ui=(1, 10, 1))
_PROMPT_HELP = "a class name (3, seven, sneaker) or, for a text model, any text; '' is the null prompt"
_GUIDANCE = Param(
    "guidance",
    Number(float, ui=(0, 15, 0.5)),
    "CFG scale s: eps = eps_u + s (eps_c - eps_u); 0 unconditional, 1 conditional (no guidance), >1 guided; "
    "= 1 + w in the (1 + w) eps_c - w eps_u convention",
    per_model=PerModel(scale_for, f"{DEFAULT_GUIDANCE:g}, the write-up's; a distilled model: its own built-in scale"),
)
# the denoising figures' guidance: none (1) unless asked for
_GUIDANCE_OFF = replace(
    _GUIDANCE,
    per_model=PerModel(partial(scale_for, default=1.0), "1 (none); a distilled model: its own built-in scale"),
)
_N = Param("n", Number(int, low=1, high=64, ui=(1, 10, 1)), "number of samples")
_NOISE_TS = Param(
    "ts",
    Number(int, low=0),
    "noise timesteps in 0..T-1",
    flag="--t",
    many=True,
    metavar="T",
    ui=False,
    per_model=PerModel(
        lambda den: t.noise_levels(den),
        "the write-up's 250, 500, 750 of 1000 scaled to the model's T (75 150 225 for T = 300)",
    ),
)
_KERNEL = Param("kernel_size", Number(int, low=1, odd=True, ui=(1, 33, 2)), "Gaussian kernel size (odd)")
_SIGMA = Param("sigma", Number(float, above=0, ui=(0.25, 8, 0.25)), "Gaussian standard deviation in pixels")
_ONE_PROMPT = Param("prompt", Text("a prompt"), _PROMPT_HELP, per_model=_defaults("prompt"))


TECHNIQUES: dict[str, Technique] = {
    spec.name: spec
    for spec in (
        Technique(
            "setup",
            t.setup_figure,
            "the write-up's set-up table: prompts x number of denoising steps",
            "Write-up part 0: one sample per prompt for each num_inference_steps, on the model's own timesteps for "
            "that count (DeepFloyd IF's scheduler), from the same noise.",
            (
                Param(
                    "prompts", Text("a prompt"), "prompts, one column each", many=True,
                    per_model=PerModel(t.setup_prompts, "IF: the write-up's three; else the model's default prompts"),
                ),
                Param("steps", Number(int, low=1), "numbers of denoising steps, one row each", flag="--num-steps",
                      many=True, ui=False),
                _GUIDANCE,
            ),
            extra={"timesteps": False, "upscale": True},
        ),
        Technique(
            "noise",
            t.noise_figure,
            "the forward process: a test image noised at several t",
            "Write-up 1.1: x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).",
            (_NOISE_TS,),
            inputs="image",
            samples=False,
        ),
        Technique(
            "blur",
            t.blur_figure,
            "classical denoising: Gaussian blur of the noisy images",
            "Write-up 1.2: the noisy images of `noise` (same seed), Gaussian-blurred.",
            (_NOISE_TS, _KERNEL, _SIGMA),
            inputs="image",
            samples=False,
        ),
        Technique(
            "denoise",
            t.denoise_figure,
            "one-step and strided iterative denoising, compared with blur",
            "Write-up 1.3-1.4: one-step denoising of the `noise` images; iterative denoising from "
            "timesteps[--i-start]; the comparison original | noisy | iterative | one-step | blur.",
            (
                _NOISE_TS,
                _ONE_PROMPT,
                _GUIDANCE_OFF,
                Param("i_start", Number(int, low=0, ui=(0, 34, 1)),
                      "index into the timesteps where iterative denoising starts",
                      per_model=PerModel(lambda den: t.iterative_start(len(ts_lib.for_model(den)), den.schedule.T),
                                         "the write-up's 10 of its 35 steps, at the same fraction of the steps "
                                         "taken")),
                Param("every", _INT1, "show every N-th iterative step"),
                _KERNEL,
                _SIGMA,
            ),
            inputs="image",
        ),
        Technique(
            "generate",
            t.sampling_figure,
            "sample from pure noise, without and with classifier-free guidance",
            "Write-up 1.5-1.6: samples from x_T ~ N(0, I) per prompt, at CFG scale 1 (none) and --guidance, from the "
            "same noise.",
            (
                Param(
                    "prompts", Text("a prompt"), _PROMPT_HELP, flag="--prompt", many=True,
                    per_model=PerModel(lambda den: list(den.default_prompts),
                                       "the model's default prompts: every class; '' for a time model"),
                ),
                _N,
                _GUIDANCE,
            ),
            extra={"upscale": True},
        ),
        Technique(
            "sdedit",
            t.sdedit_figure,
            "SDEdit: noise an image to timesteps[i_start], then denoise (image-to-image)",
            "Write-up 1.7: unconditioned (--prompt '') and text-conditioned image-to-image translation, and editing "
            "hand-drawn images (--image).",
            (
                _ONE_PROMPT,
                _GUIDANCE,
                Param("i_starts", Number(int, low=0), "start indices into the timesteps (larger: less noise, closer "
                      "to the input)", flag="--i-start", many=True, ui=False,
                      per_model=PerModel(lambda den: t.sdedit_starts(len(ts_lib.for_model(den)), den.schedule.T),
                                         "the write-up's 1 3 5 7 10 20 of its 35 steps, at the same fractions of "
                                         "the steps taken")),
            ),
            inputs="images",
        ),
        Technique(
            "inpaint",
            t.inpaint_figure,
            "inpainting: new content where the mask is 1, the original elsewhere",
            "Write-up 1.7.2: after every step the known region is replaced by the original noised to t'. --method "
            "repaint adds RePaint's resampling (Lugmayr et al. 2022).",
            (
                Param("method", Choice(INPAINT_METHODS), "replace: the write-up's method; repaint: with RePaint's "
                      "jumps back up"),
                Param("jump_length", Number(int, low=1, ui=(1, 20, 1)), "repaint: strided steps to jump back up"),
                Param("resample", Number(int, low=1, ui=(1, 10, 1)),
                      "repaint: times each jump point is resampled (1 = replace)"),
                _ONE_PROMPT,
                _GUIDANCE,
                _N,
            ),
            inputs="image+mask",
        ),
        Technique(
            "anagram",
            t.anagram_figure,
            "visual anagrams: an image that shows another prompt under a view",
            "Write-up 1.8 (Geng et al. 2024): eps = mean_i V_i^-1(eps(V_i(x_t), p_i)).",
            (
                Param("prompts", Text("a prompt"), "one prompt per view; the first is seen as is", many=True,
                      per_model=_defaults("anagram_prompts")),
                Param("views", ViewName(), "view(s) for prompts 2.. (the first prompt gets the identity), or one per "
                      "prompt", flag="--view", many=True, metavar="VIEW",
                      per_model=_defaults("anagram_views")),
                _GUIDANCE,
                _N,
            ),
        ),
        Technique(
            "hybrid",
            t.hybrid_figure,
            "hybrid images: low frequencies of one prompt, high of another (or three bands, or a given low image)",
            "Write-up 1.9 (factorized diffusion, Geng et al. 2024): eps = sum_i f_i(eps(x_t, prompt_i)) over "
            "frequency bands f_i that sum to the whole: low G_low and high I - G_low; with --mid, three: low G_low, "
            "mid G_mid - G_low, high I - G_mid. --low-image: the low band of an image instead of a prompt, held "
            "after every step (x_t' <- x_t' - G_low x_t' + G_low q_sample(image, t')).",
            (
                Param("low", Text("a prompt"), "prompt seen from afar (low frequencies)",
                      per_model=_defaults("hybrid_prompts", 0)),
                Param("mid", Text("a prompt"), "a third prompt, seen at a middle distance: its band G_mid - G_low "
                      "lies between the low filter's blur and the mid filter's", none="none: two bands"),
                Param("high", Text("a prompt"), "prompt seen up close (high frequencies)",
                      per_model=_defaults("hybrid_prompts", 1)),
                Param("low_image", ImageFile(), "the low band from this PNG/JPEG (or shipped drawing) instead of "
                      "--low, read as --image is elsewhere (padded square; for grayscale models inverted when its "
                      "border is light)",
                      none="none: --low's prompt", ui=False, metavar="FILE"),
                Param("kernel_size", _KERNEL.kind, "Gaussian kernel size (odd) of the low filter G_low",
                      per_model=_defaults("hybrid_kernel_size")),
                Param("sigma", _SIGMA.kind, "standard deviation in pixels of G_low",
                      per_model=_defaults("hybrid_sigma")),
                Param("mid_kernel_size", _KERNEL.kind, "with --mid: Gaussian kernel size (odd) of the mid filter "
                      "G_mid", per_model=_defaults("hybrid_mid_kernel_size")),
                Param("mid_sigma", _SIGMA.kind, "with --mid: standard deviation in pixels of G_mid, below --sigma",
                      per_model=_defaults("hybrid_mid_sigma")),
                _GUIDANCE,
                _N,
            ),
            consistent=t.hybrid_conflicts,
        ),
    )
}  # fmt: skip
"""Every Part A technique's spec by name, in the write-up's order (the CLI's subcommands, the UI's tabs)."""


def technique(name: str) -> Technique:
    if name not in TECHNIQUES:
        raise FundiffError(f"unknown technique {name!r}; choose one of {', '.join(TECHNIQUES)}")
    return TECHNIQUES[name]


def describe_defaults(per_model: PerModel, families: dict[str, Any]) -> str:
    """A per-model default across model families, for --help: "MNIST: 2; Fashion-MNIST: 1.5; DeepFloyd IF: 2";
    its ``text`` when it reads no TechniqueDefaults field.

    ``families``: {label: TechniqueDefaults}; values are shown as CLI tokens ('' for the null prompt)."""
    if per_model.field is None:
        return per_model.text

    def show(d) -> str:
        value = per_model.value_in(d)
        values = value if isinstance(value, (list, tuple)) else [value]
        return " ".join("''" if v == "" else _token(v) for v in values)

    return "; ".join(f"{label}: {show(d)}" for label, d in families.items())
