"""How clean the black background of a model's samples is: residual noise the last steps left behind.

    python benchmarks/background_grain.py --threads 2 mnist-time runs/mnist-time-ddpm10

For each model: 100 unconditional samples (seed 20040805, the model's default sampler: Heun 25 steps
for a flow model, DDPM 50 for the others; same model calls), clamped to [0, 1]. Over the background
pixels (value < 0.3), the table gives their mean and the share brighter than 0.05, where grain starts
to show. MNIST's own background is exactly 0 (share 0%). FID in the classifier's feature space barely
sees this, so it is measured on its own.
"""

from __future__ import annotations

import argparse

import torch

from _common import cpu_description
from fundiff import DEFAULT_SEED, samplers
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="time-model run folders or shipped names")
    ap.add_argument("--n", type=int, default=100, help="samples per model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_description())
    print("| model | sampler, steps | background mean | background pixels > 0.05 |\n|---|---|---|---|")
    for model in args.models:
        den = load_denoiser(model)
        sampler = samplers.default_sampler_of(den)
        steps = 25 if sampler == "heun" else 50
        x = samplers.sample_from_noise(
            den,
            den.encode([""] * args.n),
            ts.strided(den.schedule.T, steps=steps),
            generator=torch.Generator().manual_seed(DEFAULT_SEED),
            sampler=sampler,
        ).clamp(0, 1)
        bg = x[x < 0.3]
        print(f"| {model} | {sampler} {steps} | {bg.mean():.4f} | {100 * (bg > 0.05).float().mean():.1f}% |")


if __name__ == "__main__":
    main()
