"""Part B's sections: the noising process, the one-step denoiser and its sigma sweep (`fundiff denoise-sweep`),
and the time- and class-conditioned models sampled with the `generate` technique."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from fundiff.atomic import atomic_write_json
from fundiff.errors import FundiffError
from fundiff.tour.part_a import run_technique
from fundiff.tour.state import Made, TourState


def _sweep(t: TourState, out: Path, sigmas: Sequence[float], n_eval: int):
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


def _sweep_argv(t: TourState, out: Path, n_eval: int, *extra: str) -> list[str]:
    return t.command("denoise-sweep", "denoiser", out, *extra, "--n-eval", str(n_eval), "--n-show", str(t.sizes.n_show))


def _loss_curve(t: TourState, role: str, out: Path) -> tuple[list[Path], str]:
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


def noising(t: TourState, out: Path) -> Made:
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


def denoiser(t: TourState, out: Path) -> Made:
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


def sweep(t: TourState, out: Path) -> Made:
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


def time(t: TourState, out: Path) -> Made:
    curve, note = _loss_curve(t, "time", out)
    made = run_technique(t, out, "generate", {"n": t.sizes.n_single}, role="time", note=note)
    return replace(made, figures=curve + made.figures)


def class_model(t: TourState, out: Path) -> Made:
    curve, note = _loss_curve(t, "class-b", out)
    made = run_technique(t, out, "generate", {"n": t.sizes.n}, role="class-b", note=note)
    return replace(made, figures=curve + made.figures)
