"""DeepFloyd IF as a fundiff Denoiser (diffusers and transformers are imported only in here).

Stage I of IF (Saharia et al. 2022's cascade, DeepFloyd 2023) is a text-conditioned pixel UNet on
64x64 RGB images in [-1, 1], with a cosine schedule of T = 1000 steps (diffusers'
``squaredcos_cap_v2``) and 6 output channels: the noise estimate eps (3) and the learned
variance interpolation v in [-1, 1] (3; ``learned_range``, Nichol & Dhariwal 2021, Eq. 15).
:class:`IFDenoiser` wraps it so that every sampler, CFG, SDEdit, inpainting, anagram and hybrid
of fundiff runs on it unchanged. The schedule's betas are the model's own scheduler's.

Loading (:func:`load`): a diffusers IF folder (model_index.json, unet/, scheduler/, text_encoder/,
tokenizer/) or, through :func:`fetch`, a hub id such as ``DeepFloyd/IF-I-XL-v1.0`` (the HF cache,
else a download of the needed files only: the gated repos need the licence accepted on the hub
and ``huggingface-cli login``). Weights are read from safetensors only (``use_safetensors=True``),
never with ``trust_remote_code``. fp16 on CUDA, fp32 on the CPU. T5 is loaded only when a
prompt's embedding is neither in the ``embeddings`` file nor in the cache (backends/embeddings.py)
and released right after. ``offload`` (CUDA) loads the UNet into CPU memory and moves it to the GPU
only when it runs, and back before T5 or stage II is loaded, so the big models take turns on the GPU.
Stage II (the 256x256 upscaler) is in :mod:`fundiff.backends.deepfloyd_stage2`.

What IFPipeline does and fundiff's loop does not by default: its scheduler's dynamic
thresholding of x0_hat (Saharia et al. 2022, Sec. 2.3) or clipping, which the write-up's loop
omits; wrap the guided denoiser in :class:`DynamicThresholding` to get IFPipeline's images.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from fundiff.backends.embeddings import PromptEmbeddings, encoder_identity, load_embeddings_file
from fundiff.denoisers import Denoiser, DenoiserWrapper, Prediction
from fundiff.errors import FundiffError
from fundiff.schedules import NoiseSchedule
from fundiff.traits import ModelTraits, TechniqueDefaults

STAGE_I_IDS = ("DeepFloyd/IF-I-XL-v1.0", "DeepFloyd/IF-I-L-v1.0", "DeepFloyd/IF-I-M-v1.0")
STAGE_II_DEFAULT = "DeepFloyd/IF-II-L-v1.0"  # the write-up's upscaler
STAGE_I_PIPELINES = ("IFPipeline", "IFImg2ImgPipeline", "IFInpaintingPipeline")
STAGE_II_PIPELINES = ("IFSuperResolutionPipeline", "IFImg2ImgSuperResolutionPipeline")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/IF-[\w.-]+")  # an IF repo on the hub (not a local run folder)
_IGNORE = ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.h5", "*.onnx", "safety_checker/*", "watermarker/*"]
OOM_HINT = (
    "out of GPU memory running DeepFloyd IF; pass --offload (the UNet and T5 take turns on the GPU) or use the "
    "smaller DeepFloyd/IF-I-M-v1.0"
)

# The write-up's Part A choices for IF (64x64, T = 1000), read by the CLI through ``traits.technique_defaults``.
IF_DEFAULTS = TechniqueDefaults(
    prompt="a high quality photo",
    anagram_prompts=("an oil painting of people around a campfire", "an oil painting of an old man"),
    anagram_views=("vflip",),
    hybrid_prompts=("a lithograph of a skull", "a lithograph of waterfalls"),
    hybrid_kernel_size=33,
    hybrid_sigma=2.0,
    setup_prompts=("an oil painting of a snowy mountain village", "a man wearing a hat", "a rocket ship"),
)


# -- finding the weights --------------------------------------------------------------------------------
def is_hub_id(model: str) -> bool:
    """Whether ``model`` names an IF repository on the hub ("DeepFloyd/IF-I-XL-v1.0") and is not a local path."""
    return bool(_HUB_ID.fullmatch(model)) and not Path(model).exists()


def _no_weights(model: str, why: str) -> FundiffError:
    return FundiffError(
        f"cannot get {model} ({why}): accept its licence at https://huggingface.co/{model} and log in with "
        "`huggingface-cli login` (needs network once), or pass a local folder with the weights as --model PATH"
    )


def fetch(model: str, *, text_encoder: bool = True) -> Path | None:
    """The local folder of hub id ``model`` (HF cache, else downloaded), or None if ``model`` is no IF hub id.

    Downloads only what fundiff loads: configs, the tokenizer and the safetensors weights of the
    UNet (and T5 with ``text_encoder``), the fp16 variant where the repo has one.
    """
    if not is_hub_id(model):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FundiffError(_missing_extra("huggingface_hub")) from None
    subs = ["unet"] + (["text_encoder"] if text_encoder else [])
    common = ["model_index.json", "scheduler/*", "image_noising_scheduler/*", "tokenizer/*"]  # the last two: stage II
    common += [f"{s}/config.json" for s in subs]
    last = None
    for variant in ("fp16", None):  # fp16 halves the download; fp32-only repos get the plain files
        weights = [f"{s}/*{'fp16*' if variant else ''}.safetensors*" for s in subs]
        weights += [f"{s}/*.index.fp16.json" for s in subs] if variant else []
        try:
            path = Path(snapshot_download(model, allow_patterns=common + weights, ignore_patterns=_IGNORE))
        except Exception as e:  # offline, gated (licence not accepted), not logged in, no such repo, ...
            raise _no_weights(model, _hub_failure(e)) from None
        last = path
        if any((path / "unet").glob("*.safetensors")):
            return path
    raise FundiffError(f"{model} has no safetensors weights for its UNet (in {last}); fundiff loads safetensors only")


def _hub_failure(e: Exception) -> str:
    """Why the hub gave no weights, in a few words."""
    kind = type(e).__name__
    if kind == "LocalEntryNotFoundError":
        return "not in the Hugging Face cache, and the hub is unreachable or HF_HUB_OFFLINE is set"
    if kind == "GatedRepoError":
        return "the repo is gated: its licence is not accepted or you are not logged in"
    if kind == "RepositoryNotFoundError":
        return "no such repo, or it is gated and you are not logged in"
    first = str(e).splitlines()[0][:100] if str(e) else ""
    return f"{kind}: {first}" if first else kind


def _missing_extra(what: str) -> str:
    return f"DeepFloyd IF needs {what}: install fundiff's deepfloyd extra, pip install 'fundiff[deepfloyd]'"


def _pipeline_class(folder: Path) -> str:
    try:
        return str(json.loads((folder / "model_index.json").read_text()).get("_class_name", ""))
    except (OSError, ValueError, AttributeError):
        raise FundiffError(f"{folder}/model_index.json is unreadable; restore the model folder") from None


def _variant(folder: Path, sub: str, dtype: torch.dtype) -> str | None:
    """Which weights of ``folder/sub`` to read: "fp16" (``*.fp16.safetensors``) or None (plain), safetensors only."""
    files = [f.name for f in (folder / sub).glob("*.safetensors")]
    fp16 = [f for f in files if ".fp16" in f or "fp16-" in f]
    plain = [f for f in files if f not in fp16]
    if not files:
        others = sorted(f.name for f in (folder / sub).glob("*") if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found {', '.join(others)})" if others else ""
        raise FundiffError(
            f"{folder / sub} has no .safetensors weights{found}; fundiff loads safetensors only (no pickle): "
            "download the safetensors files of the model or convert the weights"
        )
    return "fp16" if fp16 and (dtype == torch.float16 or not plain) else None


def _dtype_for(precision: str, device: torch.device) -> torch.dtype:
    """fp16 on CUDA and fp32 elsewhere for "auto"; "fp32" / "bf16" as asked (diffusers has no fp16 on CPU)."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise FundiffError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    return torch.float16 if device.type == "cuda" else torch.float32


def _dtype_kw(module: str, since: tuple[int, int]) -> str:
    """The name of from_pretrained's load dtype: ``dtype`` from version ``since`` of ``module`` on, ``torch_dtype``
    before (diffusers 0.42 and transformers 4.56 take ``dtype``; older ones ignore it)."""
    import importlib

    version = importlib.import_module(module).__version__
    major_minor = tuple(int(re.match(r"\d+", part).group()) for part in version.split(".")[:2])
    return "dtype" if major_minor >= since else "torch_dtype"


def _diffusers_dtype(dtype: torch.dtype) -> dict:
    return {_dtype_kw("diffusers", (0, 42)): dtype}


# -- the denoiser ---------------------------------------------------------------------------------------
class IFDenoiser:
    """An IF stage-I UNet as a Denoiser: x_t (B,3,64,64) in the noisy space of x_0 in [-1, 1], t (B,) in 0..T-1,
    cond (B, L, D) T5 embeddings -> Prediction(eps (B,3,H,W), v (B,3,H,W) or None), float32. v is the
    learned_range interpolation (about [-1, 1]), passed on unclamped as IFPipeline's scheduler uses it.

    ``scheduler`` is the model's diffusers DDPMScheduler (its betas give the schedule; its config
    says whether IFPipeline thresholds); ``prompts`` turns prompts into embeddings. Its ``traits``:
    sampler ddpm (an eps model with a learned variance: DDPM ancestral steps use it), the write-up's
    :data:`IF_DEFAULTS` and ``pipeline_timesteps``, the timesteps IFPipeline visits for a number of steps.
    """

    value_range = (-1.0, 1.0)
    conditional = True
    default_prompts = (IF_DEFAULTS.prompt,)

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler,
        prompts: PromptEmbeddings,
        *,
        device: torch.device,
        dtype: torch.dtype,
        offload: bool = False,
        name: str = "DeepFloyd IF",
    ) -> None:
        cfg = scheduler.config
        if cfg.prediction_type != "epsilon":
            raise FundiffError(f"{name} predicts {cfg.prediction_type!r}; fundiff's IF backend needs an eps model")
        if cfg.variance_type not in ("learned_range", "fixed_small"):
            raise FundiffError(
                f"{name}'s variance type {cfg.variance_type!r} is not supported (learned_range, fixed_small)"
            )
        self.unet, self.scheduler, self.prompts = unet.eval().requires_grad_(False), scheduler, prompts
        self.schedule = NoiseSchedule(scheduler.betas.to(torch.float64), kind=str(cfg.beta_schedule))
        self.channels = int(unet.config.in_channels)
        self.image_size = int(unet.config.sample_size)
        self.embed_dim = int(unet.config.encoder_hid_dim or unet.config.cross_attention_dim)
        self.learned_variance = cfg.variance_type == "learned_range"
        self.dtype, self.offload, self.name = dtype, offload, name
        self._device = torch.device(device)
        self.traits = ModelTraits(
            default_sampler="ddpm",
            objective="eps",
            technique_defaults=IF_DEFAULTS,
            pipeline_timesteps=partial(pipeline_timesteps, scheduler.config),
        )

    @property
    def device(self) -> torch.device:
        return self._device

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """(len(prompts), L, D) float32 T5 embeddings on ``device`` (file, cache, or T5; see backends/embeddings)."""
        emb = self.prompts(list(prompts))
        if emb.shape[-1] != self.embed_dim:
            raise FundiffError(
                f"prompt embeddings have width {emb.shape[-1]} but {self.name} takes {self.embed_dim}; "
                "they were made for another model (check --embeddings)"
            )
        return emb.to(self._device)

    def describe_prompt(self, prompt: str) -> str:
        return prompt.strip()

    def unload_unet(self) -> None:
        """With ``offload``: move the UNet to CPU memory (before T5 takes the GPU)."""
        if self.offload:
            self.unet.to("cpu")

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        try:
            if self.offload:
                self.unet.to(self._device)
            out = self.unet(
                x_t.to(self._device, self.dtype),
                t.to(self._device),
                encoder_hidden_states=cond.to(self._device, self.dtype),
            ).sample.float()
        except torch.cuda.OutOfMemoryError:
            raise FundiffError(OOM_HINT) from None
        eps, v = out[:, : self.channels], out[:, self.channels :]
        return Prediction(eps, v if self.learned_variance else None)  # unclamped, as IFPipeline uses it


def pipeline_timesteps(config, num_inference_steps: int) -> list[int]:
    """The timesteps IFPipeline visits for ``num_inference_steps``: set_timesteps of a DDPMScheduler of ``config``.

    An IFDenoiser's ``traits.pipeline_timesteps`` is this function of its own scheduler's config.
    """
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(config)
    sched.set_timesteps(num_inference_steps)
    return [int(t) for t in sched.timesteps]


class DynamicThresholding(DenoiserWrapper):
    """IF's x0_hat processing as a Denoiser wrapper: Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3)
    or plain clipping, as diffusers' DDPMScheduler does with ``thresholding`` / ``clip_sample``.

    s = clamp(quantile(|x0_hat|, ratio) per image, 1, max_value); x0_hat <- clamp(x0_hat, -s, s) / s (threshold),
    or x0_hat <- clamp(x0_hat, -clip, clip) (clip). The returned eps is the one whose one-step estimate
    is the processed x0_hat, eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t), so any sampler uses it.
    Wrap the *guided* denoiser (IFPipeline thresholds after guidance): ``DynamicThresholding(CFG(den, s))``.
    """

    def __init__(
        self, denoiser: Denoiser, *, ratio: float | None = 0.95, max_value: float = 1.5, clip: float | None = None
    ):
        super().__init__(denoiser)
        if (ratio is None) == (clip is None):
            raise FundiffError("give exactly one of ratio (dynamic thresholding) or clip")
        self.ratio, self.max_value, self.clip = ratio, max_value, clip

    @classmethod
    def from_scheduler_config(cls, denoiser: Denoiser, config) -> Denoiser:
        """What a diffusers DDPMScheduler config does: threshold, else clip, else ``denoiser`` itself."""
        if config.thresholding:
            return cls(denoiser, ratio=config.dynamic_thresholding_ratio, max_value=config.sample_max_value)
        if config.clip_sample:
            return cls(denoiser, ratio=None, clip=config.clip_sample_range)
        return denoiser

    def process(self, x0_hat: Tensor) -> Tensor:
        """The thresholded or clipped x0_hat (B,C,H,W)."""
        if self.clip is not None:
            return x0_hat.clamp(-self.clip, self.clip)
        flat = x0_hat.reshape(x0_hat.shape[0], -1)
        s = torch.quantile(flat.abs().float(), self.ratio, dim=1).clamp(1, self.max_value).to(flat.dtype)[:, None]
        return (torch.maximum(torch.minimum(flat, s), -s) / s).reshape(x0_hat.shape)

    def __call__(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Prediction:
        pred = self.denoiser(x_t, t, cond)
        x_t64 = x_t.double()
        c = self.schedule.at(t, like=x_t64)  # float64
        x0_hat = self.process(((x_t64 - c.sigma * pred.eps.double()) / c.alpha).to(x_t.dtype))
        eps = (x_t64 - c.alpha * x0_hat.double()) / c.sigma
        return Prediction(eps.to(pred.eps.dtype), pred.v)


# -- loading --------------------------------------------------------------------------------------------
def load(
    path: Path,
    *,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    embeddings: str | Path | None = None,
    offload: bool = False,
    cache: bool = True,
) -> IFDenoiser:
    """An IF stage-I folder as an :class:`IFDenoiser` (the diffusers backend of runs.load_denoiser).

    ``embeddings``: a file of precomputed prompt embeddings (used before the cache and T5).
    ``offload`` (CUDA only): the UNet goes to the GPU when it runs and back to CPU memory before T5
    or stage II is loaded. ``cache``: keep T5
    embeddings on disk.
    """
    try:
        from diffusers import DDPMScheduler, UNet2DConditionModel
    except ImportError:
        raise FundiffError(_missing_extra("diffusers")) from None
    device = torch.device(device)
    if offload and device.type != "cuda":
        raise FundiffError("--offload moves models between CPU and GPU memory; it needs --device cuda")
    kind = _pipeline_class(path)
    if kind in STAGE_II_PIPELINES:
        raise FundiffError(
            f"{path} is an IF stage II upscaler ({kind}); pass it to --upscale, and a stage I as --model"
        )
    if kind not in STAGE_I_PIPELINES:
        raise FundiffError(
            f"{path} holds a {kind or 'diffusers'} pipeline; fundiff's diffusers backend runs DeepFloyd IF stage I"
        )
    dtype = _dtype_for(precision, device)
    try:
        unet = UNet2DConditionModel.from_pretrained(
            path,
            subfolder="unet",
            use_safetensors=True,
            variant=_variant(path, "unet", dtype),
            **_diffusers_dtype(dtype),
        )
        unet.to("cpu" if offload else device)
    except torch.cuda.OutOfMemoryError:
        raise FundiffError(OOM_HINT) from None
    except (OSError, ValueError) as e:
        raise FundiffError(f"cannot load the UNet of {path}: {str(e).splitlines()[0][:200]}") from None
    try:
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError) as e:
        raise FundiffError(f"cannot load the scheduler of {path}: {str(e).splitlines()[0][:200]}") from None
    given = load_embeddings_file(embeddings) if embeddings else None
    den: IFDenoiser | None = None

    def load_t5():
        return _load_t5(path, device=device, dtype=dtype)

    def before_t5():
        if den is not None:
            den.unload_unet()

    prompts = PromptEmbeddings(_identity(path), load_t5, given=given, cache=cache, before_t5=before_t5)
    den = IFDenoiser(unet, scheduler, prompts, device=device, dtype=dtype, offload=offload, name=str(path))
    return den


def _identity(path: Path) -> str:
    try:
        return encoder_identity(path)
    except (FundiffError, OSError):  # no text encoder here: only given embeddings can be used
        return f"no-text-encoder:{path.resolve()}"


def _load_t5(path: Path, *, device: torch.device, dtype: torch.dtype):
    """(tokenizer, T5 encoder in eval mode on ``device``) from the folder's tokenizer/ and text_encoder/."""
    try:
        from transformers import AutoTokenizer, T5EncoderModel
    except ImportError:
        raise FundiffError(_missing_extra("transformers and sentencepiece")) from None
    if not (path / "text_encoder").is_dir():
        raise FundiffError(
            f"{path} has no text_encoder/ to embed the prompts with; pass --embeddings FILE with every prompt"
        )
    variant = _variant(path, "text_encoder", dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
        encoder = T5EncoderModel.from_pretrained(
            path,
            subfolder="text_encoder",
            use_safetensors=True,
            variant=variant,
            **{_dtype_kw("transformers", (4, 56)): dtype},
        )
        return tokenizer, encoder.eval().to(device)
    except torch.cuda.OutOfMemoryError:
        raise FundiffError(OOM_HINT) from None
    except (OSError, ValueError) as e:
        raise FundiffError(f"cannot load the T5 text encoder of {path}: {str(e).splitlines()[0][:200]}") from None
