"""The DDPM noise schedule: betas -> abar (float64), forward noising and the posterior step.

Index convention (the one place it is stated; convention 4 of docs/conventions.md): timesteps are
``t in {0, ..., T-1}``, as in diffusers. ``abar[t] = prod_{s<=t} (1 - beta_s)``, so
``x_t`` at ``t = 0`` already carries a little noise (``beta_0 = 1e-4``). The clean image
is reached by a final step from ``t`` to ``t' = -1``, where ``abar_{-1} = 1`` by
definition. Samplers therefore visit ``t = T-1`` first and ``t = 0`` last.

Every coefficient of a level ``t`` comes from here (:meth:`NoiseSchedule.at` for a batch,
:meth:`NoiseSchedule.scalar_at` for one integer t; improved-diffusion's ``_extract_into_tensor``):
``alpha_t = sqrt(abar_t)``, ``sigma_t = sqrt(1 - abar_t)`` (x_t = alpha_t x_0 + sigma_t eps, convention 1),
``log SNR_t = log(alpha_t^2 / sigma_t^2)`` and the flow frame of flow.py, ``tau_t = sigma_t / (alpha_t + sigma_t)``
with ``x_t = (alpha_t + sigma_t) x_tau``. They are tabulated once per schedule in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import torch
from torch import Tensor

from fundiff.errors import FundiffError

BetaSchedule = Literal["linear", "cosine"]
BETA_SCHEDULES: tuple[str, ...] = ("linear", "cosine")


V = TypeVar("V", Tensor, float)


@dataclass(frozen=True)
class Coefficients(Generic[V]):
    """The coefficients of noise levels t, all derived from abar_t in float64 (module docstring).

    From :meth:`NoiseSchedule.at`: tensors (B, 1, ..., 1) that broadcast over a batch, in its dtype and on
    its device; from :meth:`NoiseSchedule.scalar_at`: Python floats of one integer t (float64). The clean
    image t = -1 has abar = alpha = 1, sigma = 0, log_snr = +inf, tau = 0 and flow_scale = 1.
    """

    abar: V  # abar_t = prod_{s<=t} (1 - beta_s)
    alpha: V  # sqrt(abar_t): the signal scale of x_t = alpha_t x_0 + sigma_t eps (convention 1)
    sigma: V  # sqrt(1 - abar_t): the noise scale
    log_snr: V  # log(alpha_t^2 / sigma_t^2), lambda_t = log_snr / 2 of DPM-Solver (Lu et al. 2022)
    tau: V  # flow time sigma_t / (alpha_t + sigma_t) (flow.py): 0 at the data, 1 at pure noise
    flow_scale: V  # alpha_t + sigma_t: x_t = flow_scale x_tau, the VP <-> flow map of flow.py


_FIELDS = ("abar", "alpha", "sigma", "log_snr", "tau", "flow_scale")  # the rows of NoiseSchedule's table


def _coefficient_table(abar: Tensor) -> Tensor:
    """(6, T + 1) float64: the :class:`Coefficients` fields (rows, in :data:`_FIELDS` order) of t = -1..T-1."""
    abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    log_snr = 2 * (alpha / sigma).log()  # +inf at t = -1 (sigma = 0); halved exactly into DPM-Solver's lambda
    flow_scale = alpha + sigma
    return torch.stack([abar, alpha, sigma, log_snr, sigma / flow_scale, flow_scale])


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete DDPM schedule (Ho et al. 2020) holding ``betas`` and ``abar`` in float64.

    Build one with :meth:`linear` (the write-up's Part B schedule) or :meth:`cosine`
    (Nichol & Dhariwal 2021; diffusers' ``squaredcos_cap_v2``, used by DeepFloyd IF).
    """

    betas: Tensor  # (T,) float64, beta_t for t = 0..T-1
    kind: str = "custom"

    def __post_init__(self) -> None:
        b = self.betas
        inner = b[:-1]  # the last beta may be 1: pure noise at t = T-1 (zero terminal SNR, Lin et al. 2024)
        if b.ndim != 1 or len(b) < 2 or not (bool(((inner > 0) & (inner < 1)).all()) and 0 < float(b[-1]) <= 1):
            raise FundiffError(
                "betas must be a 1-D tensor of at least 2 values in (0, 1), the last may be 1 (zero terminal SNR)"
            )
        object.__setattr__(self, "betas", b.to(torch.float64))
        object.__setattr__(self, "abar", torch.cumprod(1.0 - self.betas, dim=0))  # (T,) float64
        object.__setattr__(self, "_table", _coefficient_table(self.abar))  # (6, T + 1) float64, column t + 1

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 300, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """The write-up's schedule: ``beta = linspace(beta_start, beta_end, T)`` (convention 4)."""
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), kind="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17), betas clipped at ``max_beta``."""

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
        return cls(torch.tensor(betas, dtype=torch.float64), kind="cosine")

    @classmethod
    def from_name(cls, name: str, T: int) -> "NoiseSchedule":
        """Look a schedule up by name (``linear`` or ``cosine``)."""
        if name == "linear":
            return cls.linear(T)
        if name == "cosine":
            return cls.cosine(T)
        raise FundiffError(f"unknown noise schedule {name!r}; choose one of {', '.join(BETA_SCHEDULES)}")

    @property
    def T(self) -> int:
        return len(self.betas)

    def _index(self, t: Tensor | int) -> Tensor:
        """Integer levels ``t`` in -1..T-1 as long column indices t + 1 of the table (on the CPU)."""
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        if bool(((t < -1) | (t >= self.T)).any()):
            raise FundiffError(f"timesteps must lie in -1..{self.T - 1}, got {t.min().item()}..{t.max().item()}")
        return t + 1

    def abar_at(self, t: Tensor | int) -> Tensor:
        """``abar_t`` (float64, CPU, t's shape) for integer ``t`` in -1..T-1, with ``abar_{-1} = 1`` (the clean image).

        The bare table entry; for the coefficients of a batch use :meth:`at`, of one step :meth:`scalar_at`.
        """
        return self._table[0, self._index(t)]

    def at(self, t: Tensor | int, like: Tensor) -> Coefficients[Tensor]:
        """The :class:`Coefficients` of levels ``t`` for the batch ``like`` (B, ...).

        ``t``: an int (every row) or a (B,) long tensor in -1..T-1, on any device. Each field is computed in
        float64, then cast to ``like``'s dtype (on the CPU: MPS has no float64) and moved to its device with
        shape (B, 1, ..., 1) (``like.ndim`` dims).
        """
        batch = like.shape[0]
        index = self._index(t)
        if index.ndim > 1 or (index.ndim == 1 and len(index) != batch):
            raise FundiffError(f"timesteps must be an int or one per image ({batch}), got shape {tuple(index.shape)}")
        rows = self._table[:, index.expand(batch)].to(like.dtype)  # (6, B)
        rows = rows.reshape(len(_FIELDS), batch, *([1] * (like.ndim - 1))).to(like.device)
        return Coefficients(*rows.unbind(0))

    def scalar_at(self, t: int) -> Coefficients[float]:
        """The :class:`Coefficients` of one integer level ``t`` in -1..T-1 as Python floats (float64)."""
        return Coefficients(*self._table[:, int(self._index(int(t)))].tolist())

    # -- forward process ----------------------------------------------------------------
    def q_sample(self, x_0: Tensor, t: Tensor | int, eps: Tensor) -> Tensor:
        """Sample q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (convention 1).

        x_0, eps: (B, C, H, W); t: int or (B,) long in -1..T-1 (t = -1 returns x_0). Returns x_t like x_0.
        """
        c = self.at(t, like=x_0)
        return c.alpha * x_0 + c.sigma * eps

    def x0_from_eps(self, x_t: Tensor, t: Tensor | int, eps_hat: Tensor) -> Tensor:
        """One-step estimate x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) (convention 2).

        Undefined at zero SNR (abar_t = 0, the last level of a schedule that reaches pure noise): there a model
        must give x0 itself (denoisers.Prediction.x0), and asking for it here is an error."""
        c = self.at(t, like=x_t)
        if self.zero_terminal_snr and bool((torch.as_tensor(t) == self.T - 1).any()):
            raise FundiffError(
                "x0 cannot be estimated from eps at pure noise (abar = 0, t = T-1 of this schedule); "
                "the model must predict x0 (a course-flow model does), or start below t = T-1"
            )
        return (x_t - c.sigma * eps_hat) / c.alpha

    @property
    def zero_terminal_snr(self) -> bool:
        """Whether the last level is pure noise (beta = 1, abar = 0: flow.schedule(T, endpoint=True))."""
        return bool(self.betas[-1] == 1)

    # -- reverse process ----------------------------------------------------------------
    def posterior(
        self, x_t: Tensor, x0_hat: Tensor, t: int, t_prev: int, v: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_t' | x_t, x0_hat) for a strided pair t' = t_prev < t.

        convention 3 (Ho et al. 2020, Eq. 7 with alpha_t = abar_t / abar_t'):
        mean = sqrt(abar_t') beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_t') / (1 - abar_t) x_t,
        var  = beta_t (1 - abar_t') / (1 - abar_t), or, with the model's variance channels
        ``v`` in [-1, 1] (``learned_range``, Nichol & Dhariwal 2021, Eq. 15), the log-space
        interpolation between that value and beta_t. Returns (mean like x_t, var broadcastable).
        """
        if not -1 <= t_prev < t < self.T:
            raise FundiffError(f"need -1 <= t_prev < t < T={self.T}, got t={t}, t_prev={t_prev}")
        now, prev = self.scalar_at(t), self.scalar_at(t_prev)
        abar_t, abar_prev = now.abar, prev.abar
        alpha_t = abar_t / abar_prev
        beta_t = 1 - alpha_t
        mean = (prev.alpha * beta_t / (1 - abar_t)) * x0_hat + (
            math.sqrt(alpha_t) * (1 - abar_prev) / (1 - abar_t)
        ) * x_t
        var_small = max(beta_t * (1 - abar_prev) / (1 - abar_t), 1e-20)
        if v is None:
            return mean, torch.full((), var_small, dtype=x_t.dtype, device=x_t.device)
        frac = (v.to(torch.float64) + 1) / 2
        log_var = frac * math.log(beta_t) + (1 - frac) * math.log(var_small)
        return mean, log_var.exp().to(x_t.dtype)

    def p_step(
        self,
        x_t: Tensor,
        eps_hat: Tensor,
        t: int,
        t_prev: int,
        *,
        v: Tensor | None = None,
        x0_hat: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One ancestral step x_t -> x_t' (convention 3). Returns (x_t', x0_hat).

        No noise is added on the final step (t' = -1). ``noise`` (like x_t) overrides
        drawing fresh noise from ``generator``; ``x0_hat``, the model's own clean estimate, the one from eps.
        """
        x0_hat = self.x0_from_eps(x_t, t, eps_hat) if x0_hat is None else x0_hat
        mean, var = self.posterior(x_t, x0_hat, t, t_prev, v)
        if t_prev < 0:
            return mean, x0_hat
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + var.sqrt() * noise, x0_hat

    def ddim_step(
        self,
        x_t: Tensor,
        eps_hat: Tensor,
        t: int,
        t_prev: int,
        *,
        eta: float = 0.0,
        x0_hat: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One DDIM step x_t -> x_t' (Song et al. 2021, Eq. 12; eta=0 is deterministic).

        Returns (x_t', x0_hat). eta=1 uses the DDPM posterior variance of the strided pair; ``x0_hat``, the
        model's own clean estimate, replaces the one from eps.
        """
        x0_hat = self.x0_from_eps(x_t, t, eps_hat) if x0_hat is None else x0_hat
        now, prev = self.scalar_at(t), self.scalar_at(t_prev)
        abar_t, abar_prev = now.abar, prev.abar
        sigma = eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
        direction = math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps_hat
        x_prev = prev.alpha * x0_hat + direction
        if sigma > 0 and t_prev >= 0:
            if noise is None:
                noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
            x_prev = x_prev + sigma * noise
        return x_prev, x0_hat
