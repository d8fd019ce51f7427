"""The training losses of the three model kinds, and the regression targets of the diffusion objectives.

- ``denoiser``: D(z) ~ x, z = x + sigma * eps (or pure noise z = eps: ``pure_noise``), L2 loss on x.
- ``time`` / ``class``: the UNet at (x_t, t) regresses eps (Ho et al. 2020, Alg. 1), v
  (Salimans & Ho 2022) or, for flow matching, the velocity eps - x0 at (x_tau, tau) (``course-flow``: the
  course's x1 - x0 at (x_t, t), t ~ U[0, 1], x_t = (1 - t) x0 + t x1, x0 the noise, x1 the data); eps and v
  may be weighted by min-SNR (Hang et al. 2023). The class vector is dropped to zeros with
  probability p_uncond (classifier-free guidance, Ho & Salimans 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fundiff import flow
from fundiff.schedules import NoiseSchedule
from fundiff.training.config import TrainConfig

MIN_SNR_GAMMA = 5.0


def batch_loss(
    model: nn.Module,
    cfg: TrainConfig,
    schedule: NoiseSchedule | None,
    x0: Tensor,
    y: Tensor,
    g: torch.Generator,
    texts: tuple[Tensor, ...] | None = None,
    eps: Tensor | None = None,
) -> Tensor:
    """The kind's training loss on a clean batch x0 (B,C,H,W) in [0,1] with labels y (B,).

    ``model`` may be wrapped in DistributedDataParallel; all noise, times, texts and class dropouts come from
    ``g``. ``texts`` (a text model: text.TextEncoder.variant_table): the class vector of item y is the bag of
    words of one of its training texts, drawn with ``g`` (a name text with probability ``cfg.name_share``); else
    the one-hot vector of class y, and zeros (the null class) for y = num_classes. ``eps`` (reflow,
    training.distill): each image's own noise, the other end of its straight path, in place of fresh noise.
    """
    if eps is None:
        eps = torch.randn(x0.shape, generator=g, device=x0.device)
    if cfg.kind == "denoiser":  # z = x + sigma eps, or (pure noise) z = eps: then D(z) can only learn the mean
        z = eps if cfg.pure_noise else x0 + cfg.sigma * eps
        return F.mse_loss(model(z).float(), x0)
    b = x0.shape[0]
    if cfg.objective == "flow":
        tau = flow.sample_times(b, law=cfg.flow_times, generator=g, device=x0.device, low_share=cfg.low_times)
        x_in, t_in, target, weight = flow.interpolate(x0, eps, tau), tau, flow.velocity(x0, eps), None
    elif cfg.objective == "course-flow":  # the course's time t = 1 - tau (every time law is symmetric about 1/2)
        t = flow.sample_times(b, law=cfg.flow_times, generator=g, device=x0.device)
        x_in, t_in, target, weight = flow.interpolate(x0, eps, 1 - t), t, -flow.velocity(x0, eps), None
    else:
        assert schedule is not None
        t = torch.randint(0, cfg.T, (b,), generator=g, device=x0.device)
        x_in, t_in = schedule.q_sample(x0, t, eps), t.float() / (cfg.T - 1)
        target, weight = diffusion_target(schedule, x0, eps, t, cfg.objective, cfg.loss_weight)
    c = None
    if cfg.kind == "class":
        net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if texts is not None:
            from fundiff.text import sample_vectors

            c = sample_vectors(texts, net.config.num_classes, y, g, cfg.name_share)
        else:
            n = net.config.num_classes
            c = F.one_hot(y, n + 1)[:, :n].float()  # y = n: the null class (all zeros)
        keep = (torch.rand(b, generator=g, device=x0.device) >= cfg.p_uncond).float()
        c = c * keep[:, None]
    err = (model(x_in, t_in, c).float() - target).pow(2)
    if weight is None:
        return err.mean()
    return (err.mean(dim=(1, 2, 3)) * weight).mean()


def diffusion_target(
    schedule: NoiseSchedule, x0: Tensor, eps: Tensor, t: Tensor, objective: str, loss_weight: str
) -> tuple[Tensor, Tensor | None]:
    """(regression target, per-sample loss weight or None) of a DDPM objective at timesteps ``t`` (B,).

    ``eps``: the noise; ``v``: alpha_t eps - sigma_t x0 (Salimans & Ho 2022). ``min-snr``
    (Hang et al. 2023) weights each sample by min(SNR, gamma) / SNR for eps and
    min(SNR, gamma) / (SNR + 1) for v, SNR = abar / (1 - abar), gamma = 5: the eps-loss of
    a clean-ish sample no longer dominates, and the v-loss is the same weighting in x0 terms.
    """
    c = schedule.at(t, like=x0)  # alpha_t, sigma_t, abar_t per sample, (B,1,1,1)
    target = eps if objective == "eps" else c.alpha * eps - c.sigma * x0
    if loss_weight == "none":
        return target, None
    abar = c.abar.flatten()
    snr = abar / (1 - abar)
    weight = snr.clamp(max=MIN_SNR_GAMMA) / (snr if objective == "eps" else snr + 1)
    return target, weight


__all__ = ["MIN_SNR_GAMMA", "batch_loss", "diffusion_target"]
