"""DeepFloyd IF stage II: 64x64 samples of stage I -> 256x256 (IFSuperResolutionPipeline), conditioned on the
same T5 embeddings. diffusers is imported here only when stage II is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from fundiff.backends.deepfloyd import (  # the backend's own helpers, shared by its two stages
    OOM_HINT,
    STAGE_II_DEFAULT,
    STAGE_II_PIPELINES,
    IFDenoiser,
    _diffusers_dtype,
    _dtype_for,
    _missing_extra,
    _pipeline_class,
    _variant,
    fetch,
)
from fundiff.denoisers import Denoiser
from fundiff.errors import FundiffError


@dataclass
class Upscaler:
    """IF stage II (IFSuperResolutionPipeline): 64x64 -> 256x256, conditioned on the same T5 embeddings."""

    pipe: object
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(cls, model: str | Path, *, device: torch.device | str, precision: str = "auto", offload: bool = False):
        """Stage II from a local folder or hub id (default :data:`STAGE_II_DEFAULT`), without its text encoder."""
        try:
            from diffusers import IFSuperResolutionPipeline
        except ImportError:
            raise FundiffError(_missing_extra("diffusers")) from None

        device = torch.device(device)
        folder = Path(model) if Path(model).is_dir() else fetch(str(model), text_encoder=False)
        if folder is None:
            raise FundiffError(
                f"upscaler {str(model)!r} not found: give an IF stage II folder or e.g. {STAGE_II_DEFAULT}"
            )
        if _pipeline_class(folder) not in STAGE_II_PIPELINES:
            raise FundiffError(f"{folder} is not an IF stage II folder (IFSuperResolutionPipeline)")
        dtype = _dtype_for(precision, device)
        try:
            pipe = IFSuperResolutionPipeline.from_pretrained(
                folder,
                text_encoder=None,
                tokenizer=None,
                safety_checker=None,
                feature_extractor=None,
                watermarker=None,
                requires_safety_checker=False,
                use_safetensors=True,
                variant=_variant(folder, "unet", dtype),
                **_diffusers_dtype(dtype),
            )
            pipe.set_progress_bar_config(disable=True)
            if offload:
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
        except torch.cuda.OutOfMemoryError:
            raise FundiffError(OOM_HINT) from None
        except (OSError, ValueError) as e:
            raise FundiffError(f"cannot load the stage II upscaler {folder}: {str(e).splitlines()[0][:200]}") from None
        return cls(pipe, device, dtype)

    @torch.no_grad()
    def __call__(
        self,
        images: Tensor,
        cond: Tensor,
        null: Tensor,
        *,
        generator: torch.Generator | None,
        steps: int = 50,
        guidance: float = 4.0,
        noise_level: int = 250,
    ) -> Tensor:
        """images (B,3,64,64) in [-1, 1], cond (B, L, D), null (1, L, D) -> (B,3,256,256) float32 in [-1, 1]."""
        b = images.shape[0]
        try:
            out = self.pipe(
                image=images.clamp(-1, 1).to(self.device, self.dtype),
                prompt_embeds=cond.to(self.device, self.dtype),
                negative_prompt_embeds=null.to(self.device, self.dtype).expand(b, *null.shape[1:]),
                generator=generator,
                num_inference_steps=steps,
                guidance_scale=guidance,
                noise_level=noise_level,
                output_type="pt",
            ).images
        except torch.cuda.OutOfMemoryError:
            raise FundiffError(OOM_HINT) from None
        return out.float()


NEEDS_STAGE_ONE = "--upscale runs DeepFloyd IF stage II on IF stage I samples; use it with an IF --model"


def upscale_fn(
    denoiser: Denoiser,
    model: str | Path = STAGE_II_DEFAULT,
    *,
    precision: str = "auto",
    offload: bool = False,
    steps: int = 50,
    seed: int = 0,
):
    """A techniques.Upscale for ``denoiser`` (IF stage I): stage II ``model`` with the same prompt embeddings.

    Stage II is loaded on first use; each call draws its noise from a generator seeded with ``seed``.
    """
    if not isinstance(denoiser, IFDenoiser):
        raise FundiffError(NEEDS_STAGE_ONE)
    upscaler: list[Upscaler] = []

    def upscale(images: Tensor, prompts) -> Tensor:
        if not upscaler:
            denoiser.unload_unet()
            upscaler.append(Upscaler.load(model, device=denoiser.device, precision=precision, offload=offload))
        up = upscaler[0]
        generator = torch.Generator(device=up.device).manual_seed(seed)
        return up(images, denoiser.encode(list(prompts)), denoiser.encode([""]), generator=generator, steps=steps)

    return upscale
