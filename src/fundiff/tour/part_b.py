"""Part B's sections: the noising process, the one-step denoiser and its sigma sweep (`fundiff denoise-sweep`),
and the time- and class-conditioned models sampled with the `generate` technique."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from fundiff import provenance
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


# The pure-noise denoiser the tour trains (the flow edition's Part 1.2.3): the quick denoiser recipe, made small
# enough to train in ~20 s on 2 cores, on the first Sizes.pure_noise_images training images; outputs after these epochs
PURE_NOISE_EPOCHS = (1, 5)
PURE_NOISE_RECIPE = dict(hidden=16, lr=1e-2, save_every=0, precision="fp32")


def pure_noise(t: TourState, out: Path) -> Made:
    """Train a one-step denoiser on pure noise (`fundiff train denoiser --pure-noise`) and show its outputs on
    fresh noise after PURE_NOISE_EPOCHS beside the training images' mean, with their RMSE to it."""
    from fundiff import io, training
    from fundiff.training.figures import epoch_figures
    from fundiff.training.inputs import training_inputs

    flags = dict(pure_noise=True, epochs=max(PURE_NOISE_EPOCHS), sample_epochs=PURE_NOISE_EPOCHS)
    flags |= dict(PURE_NOISE_RECIPE, train_images=t.sizes.pure_noise_images, dataset=t.dataset, seed=t.seed)
    cfg = training.preset_config("quick", "denoiser", **flags)
    (x, y), _ = training_inputs(cfg, t.data_dir)
    mean = x.float().div(255).mean(0).reshape(1, 1, *x.shape[-2:]).to(t.device)
    # the noise of the run's own figures (epoch_figures: a generator seeded with cfg.seed, the first draw)
    z = torch.randn(
        (8, 1, *x.shape[-2:]), generator=torch.Generator(device=t.device).manual_seed(cfg.seed), device=t.device
    )
    draw, outputs = epoch_figures(cfg, t.device, (), t.data_dir), {}

    def on_epoch_end(model, epoch: int, run_dir: Path) -> None:
        draw(model, epoch, run_dir)
        if epoch in PURE_NOISE_EPOCHS:
            with torch.no_grad():
                outputs[epoch] = model(z).clamp(0, 1)[: t.sizes.n_show]

    run = out / "run"
    argv = ["fundiff", "train", "denoiser", "--preset", "quick", "--pure-noise", "--epochs", str(cfg.epochs)]
    argv += ["--sample-epochs", ",".join(map(str, PURE_NOISE_EPOCHS)), "--train-images", str(cfg.train_images)]
    argv += ["--hidden", str(cfg.hidden), "--lr", f"{cfg.lr:g}", "--save-every", "0", "--precision", cfg.precision]
    argv += ["--dataset", cfg.dataset, "--seed", str(cfg.seed), "--out", str(run), *t.machine_flags()]
    command = "fundiff " + provenance.portable_command(argv[1:])
    extra = {**provenance.run_info(cfg.precision, t.device), "command": command}
    training.train(
        cfg, run, data=(x, y), device=t.device, progress=False, on_epoch_end=on_epoch_end, extra_config=extra
    )
    n = t.sizes.n_show
    rows = [outputs[e] for e in PURE_NOISE_EPOCHS] + [mean.expand(n, -1, -1, -1)]
    labels = [f"after {e} epoch{'s' * (e > 1)}" for e in PURE_NOISE_EPOCHS] + ["training-set mean"]
    fig = io.save_labeled_grid(rows, labels, out / "pure_noise.png", title="D(ε) on fresh pure noise ε")
    rmse = [float((outputs[e] - mean).pow(2).mean().sqrt()) for e in PURE_NOISE_EPOCHS]
    typical = float((x[:n].float().div(255).to(t.device) - mean).pow(2).mean().sqrt())
    numbers = [
        (f"RMSE of the outputs to the mean image after {e} epoch(s)", f"{r:.3f}")
        for e, r in zip(PURE_NOISE_EPOCHS, rmse)
    ]
    numbers.append(("RMSE of a training image to the mean image (for scale)", f"{typical:.3f}"))
    figures = [fig] + [run / f"denoised_epoch{e}.png" for e in PURE_NOISE_EPOCHS]
    return Made(figures, argv, numbers)


def time(t: TourState, out: Path) -> Made:
    curve, note = _loss_curve(t, "time", out)
    made = run_technique(t, out, "generate", {"n": t.sizes.n_single}, role="time", note=note, animate=True)
    return replace(made, figures=curve + made.figures)


def class_model(t: TourState, out: Path) -> Made:
    curve, note = _loss_curve(t, "class-b", out)
    made = run_technique(t, out, "generate", {"n": t.sizes.n}, role="class-b", note=note, animate=True)
    return replace(made, figures=curve + made.figures)


def fast(t: TourState, out: Path) -> Made:
    return run_technique(t, out, "generate", {"n": t.sizes.n}, role="fast")
