"""Sampling time and class accuracy against the number of steps, for a class-conditioned model.

    python benchmarks/sampling_speed.py --model mnist-class --classifier mnist-classifier --threads 2

For each step count: 100 samples (10 per class) with CFG (cond + uncond in one batch),
timed end to end after one warm-up run, then graded by fundiff's classifier on more
samples (--n-acc per class, same steps). DDPM ancestral steps, and DDIM (eta 0) with --ddim.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import cpu_description
from fundiff import DEFAULT_SEED
from fundiff import timesteps as ts
from fundiff.classify import load_classifier
from fundiff.devices import resolve_precision
from fundiff.evaluation import draw_samples
from fundiff.guidance import CFG
from fundiff.metrics import class_accuracy
from fundiff.runs import load_denoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class", help="class-conditioned run folder or shipped name")
    ap.add_argument("--classifier", default="mnist-classifier", help="classifier run folder or shipped name")
    ap.add_argument("--steps", default="10,20,30,50,100,300", help="comma-separated step counts")
    ap.add_argument("--guidance", type=float, default=5.0, help="CFG scale")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"), help="UNet autocast precision")
    ap.add_argument("--n-acc", type=int, default=50, help="samples per class for the accuracy column")
    ap.add_argument("--ddim", action="store_true", help="also DDIM (eta = 0) rows")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    den = load_denoiser(
        args.model, device=device, autocast_dtype=resolve_precision(args.precision, device), kinds=("class",)
    )
    clf, _ = load_classifier(args.classifier, device=device)
    guided = CFG(den, args.guidance)
    names = den.class_names
    prompts100 = [n for n in names for _ in range(10)]
    prompts_acc = [n for n in names for _ in range(args.n_acc)]
    target = torch.arange(len(names)).repeat_interleave(args.n_acc)
    print(f"model={args.model} guidance={args.guidance} precision={args.precision} threads={torch.get_num_threads()}")
    print(f"torch={torch.__version__} cpu={cpu_description()}")
    print(f"{'sampler':8s} {'steps':>5s} {'100 samples (s)':>16s} {'accuracy':>9s}")
    for eta in [None] + ([0.0] if args.ddim else []):
        for steps in [int(s) for s in args.steps.split(",")]:
            timesteps = ts.strided(den.schedule.T, steps=steps)
            g = torch.Generator().manual_seed(args.seed)
            draw_samples(guided, prompts100[:10], timesteps[:2], generator=g, eta=eta)  # warm-up
            t0 = time.perf_counter()
            draw_samples(guided, prompts100, timesteps, generator=torch.Generator().manual_seed(args.seed), eta=eta)
            wall = time.perf_counter() - t0
            x = draw_samples(
                guided, prompts_acc, timesteps, generator=torch.Generator().manual_seed(args.seed + 1), eta=eta
            )
            acc = class_accuracy(clf, x, target, num_classes=len(names)).overall
            print(f"{'DDPM' if eta is None else 'DDIM':8s} {steps:>5d} {wall:>16.2f} {acc:>9.3f}")


if __name__ == "__main__":
    main()
