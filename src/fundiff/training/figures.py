"""The figures a training run draws after its epochs (``fundiff train`` and the tour share them).

:func:`epoch_figures` makes ``training.train``'s ``on_epoch_end``: the loss curve after every epoch, and
after each of ``sample_epochs`` the model's outputs (a one-step denoiser) or samples (time / class models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from fundiff import DEFAULT_GUIDANCE
from fundiff.training.config import TrainConfig


def epoch_figures(
    cfg: TrainConfig, device, class_names: Sequence[str] = (), data_dir: str | Path | None = None, encoder=None
) -> Callable[[nn.Module, int, Path], None]:
    """``training.train``'s on_epoch_end: the loss curve (loss.png) after every epoch and, after the epochs in
    ``cfg.sample_epochs``, a figure of the model: a one-step denoiser's outputs on 8 test images
    (denoised_epochN.png: clean | input | output), else CFG samples per class or prompt (samples_epochN.png).
    Noise from a generator seeded with ``cfg.seed``; ``encoder``: a text model's fundiff.text.TextEncoder."""
    import torch

    from fundiff import io
    from fundiff.checkpoints import read_json

    def draw(model, epoch: int, run_dir: Path) -> None:
        state = read_json(run_dir / "state.json")
        io.plot_loss(state["losses"], run_dir / "loss.png", title=f"{cfg.kind} UNet training loss ({cfg.dataset})")
        if epoch not in cfg.sample_epochs:
            return
        model.eval()
        g = torch.Generator(device=device).manual_seed(cfg.seed)
        if cfg.kind == "denoiser":
            from fundiff import data as data_lib

            x_test, _ = data_lib.load_split(cfg.dataset, data_dir, train=False)
            x = data_lib.to_unit_float(x_test[:8], device)
            eps = torch.randn(x.shape, generator=g, device=device)
            z = eps if cfg.pure_noise else x + cfg.sigma * eps
            with torch.no_grad():
                out = model(z).clamp(0, 1)
            io.save_labeled_grid(
                [x, z.clamp(0, 1), out],
                ["clean", "pure noise" if cfg.pure_noise else f"noisy σ={cfg.sigma}", "denoised"],
                run_dir / f"denoised_epoch{epoch}.png",
                title=f"epoch {epoch}",
            )
            return
        from fundiff import samplers
        from fundiff import timesteps as ts
        from fundiff.denoisers import UNetDenoiser
        from fundiff.guidance import CFG
        from fundiff.training import schedule_of_config

        den = UNetDenoiser(
            model, schedule_of_config(cfg), class_names=class_names, objective=cfg.objective, text=encoder
        )
        if encoder is not None:
            from fundiff.emoji import DEFAULT_PROMPTS

            prompts = [p for p in DEFAULT_PROMPTS for _ in range(4)]
            den, rows = CFG(den, DEFAULT_GUIDANCE), len(DEFAULT_PROMPTS)
        elif cfg.kind == "class":
            prompts = [name for name in class_names for _ in range(4)]
            den = CFG(den, DEFAULT_GUIDANCE)
            rows = 10
        else:
            prompts, rows = [""] * 40, 4
        # every step (the write-up's DDPM sampler; the course's flow sampler), or 50 of a flow model's T
        steps = ts.strided(cfg.T, steps=min(cfg.T, 50)) if cfg.objective == "flow" else ts.full(cfg.T)
        sampler = samplers.default_sampler_of(den)  # heun for a flow model, else ddpm
        x = samplers.sample_from_noise(den, den.encode(prompts), steps, generator=g, device=device, sampler=sampler)
        io.save_grid(x.clamp(0, 1), run_dir / f"samples_epoch{epoch}.png", nrow=len(prompts) // rows, scale=2)

    return draw


__all__ = ["epoch_figures"]
