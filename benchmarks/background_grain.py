"""How clean the black background of a model's samples is: residual noise the last steps left behind.

    python benchmarks/background_grain.py --threads 2 mnist-time runs/mnist-time-ddpm10

For each model: 100 unconditional samples (seed 20040805, the model's default sampler: Heun 25 steps
for a flow model, DDPM 50 for the others, or each of --samplers), clamped to [0, 1]. The table gives the share
of background pixels brighter than 0.05, where grain starts to show, by two definitions of background:
every pixel below 0.3 (fundiff's first measure, which counts the anti-aliased rims of the strokes: MNIST's
test set itself scores 3.6%), and pixels away from the strokes (metrics.background_grain: MNIST scores
exactly 0%). FID in the classifier's feature space barely sees this, so it is measured on its own.
"""

from __future__ import annotations

import argparse

import torch

from _common import cpu_description
from fundiff import DEFAULT_SEED, samplers
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser
from fundiff.metrics import background_grain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="time-model run folders or shipped names")
    ap.add_argument("--n", type=int, default=100, help="samples per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--samplers", default="", help="SAMPLER:STEPS,... instead of each model's default, e.g. heun:35,dpm++:10"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_description())
    print("| model | sampler, steps | pixels < 0.3: share > 0.05 | away from the strokes: share > 0.05 |")
    print("|---|---|---|---|")
    given = [(name, int(steps)) for name, steps in (item.split(":") for item in filter(None, args.samplers.split(",")))]
    for model in args.models:
        den = load_denoiser(model)
        own = samplers.default_sampler_of(den)
        for sampler, steps in given or [(own, 25 if own == "heun" else 50)]:
            _row(model, den, sampler, steps, args.n)


def _row(model: str, den, sampler: str, steps: int, n: int) -> None:
    x = samplers.sample_from_noise(
        den,
        den.encode([""] * n),
        ts.strided(den.schedule.T, steps=steps),
        generator=torch.Generator().manual_seed(DEFAULT_SEED),
        sampler=sampler,
    ).clamp(0, 1)
    dim = x[x < 0.3]
    print(
        f"| {model} | {sampler} {steps} | {(dim > 0.05).float().mean():.1%} | {background_grain(x):.1%} |", flush=True
    )


if __name__ == "__main__":
    main()
