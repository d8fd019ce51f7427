"""Sampler x steps: seconds for 100 CFG samples, class accuracy and FID, against 50-step DDPM.

    python benchmarks/sampling_speed.py --threads 2 --samplers ddpm,ddim,dpm++ --steps 5,8,10,20

For each sampler and step count: 100 class samples (10 per class) with CFG (cond + uncond in
one 200-image batch), timed after a warm-up (sampling alone, not start-up); then --n-eval
samples graded by fundiff's classifier (accuracy) and scored by FID against the test set, in
the same run as the baseline, DDPM with 50 steps. The process keeps freed memory as the
``fundiff`` command does (benchmarks/allocator.py measures what that changes).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import class_grading, cpu_description
from fundiff import DEFAULT_SEED
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser, resolve
from fundiff.checkpoints import load_config
from fundiff.classify import load_classifier
from fundiff.evaluation import draw_samples
from fundiff.guidance import CFG
from fundiff.memory import keep_freed_memory
from fundiff.metrics import class_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class", help="class-conditioned run folder or shipped name")
    ap.add_argument("--classifier", default="mnist-classifier", help="classifier run folder or shipped name")
    ap.add_argument("--samplers", default="ddpm,ddim,dpm++", help="comma-separated sampler names")
    ap.add_argument("--steps", default="5,8,10,20", help="comma-separated step counts")
    ap.add_argument("--guidance", type=float, default=5.0, help="CFG scale")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"), help="UNet autocast precision")
    ap.add_argument("--n-eval", type=int, default=500, help="samples for accuracy and FID (a multiple of 10)")
    ap.add_argument("--time-only", action="store_true", help="only the seconds column (no accuracy / FID)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    den = load_denoiser(args.model, device=device, precision=args.precision)
    clf, _ = load_classifier(args.classifier, device=device)
    dataset = load_config(resolve(args.model))["train"]["dataset"]
    guided = CFG(den, args.guidance)
    names = den.default_prompts
    fid, prompts100, prompts_eval, target, floor = class_grading(clf, dataset, names, args.n_eval, args.seed)
    print(cpu_description())
    print(f"model={args.model} guidance={args.guidance} precision={args.precision} threads={torch.get_num_threads()}")
    print(f"torch={torch.__version__}; FID floor ({len(prompts_eval)} train images) {floor:.2f}")

    def measure(sampler: str, steps: int) -> tuple[float, float, float]:
        timesteps = ts.strided(den.schedule.T, steps=steps)
        draw_samples(guided, prompts100[:10], timesteps[:2], generator=torch.Generator(), sampler=sampler)  # warm-up
        t0 = time.perf_counter()
        draw_samples(guided, prompts100, timesteps, generator=torch.Generator().manual_seed(args.seed), sampler=sampler)
        wall = time.perf_counter() - t0
        if args.time_only:
            return wall, float("nan"), float("nan")
        g = torch.Generator().manual_seed(args.seed + 2)
        x = draw_samples(guided, prompts_eval, timesteps, generator=g, sampler=sampler)
        return wall, class_accuracy(clf, x, target, num_classes=len(names)).overall, fid(x)

    base = measure("ddpm", 50)
    print("| sampler | steps | 100 samples (s) | accuracy | FID | FID / DDPM-50 |")
    print("|---|---|---|---|---|---|")
    print(f"| ddpm (baseline) | 50 | {base[0]:.2f} | {base[1]:.1%} | {base[2]:.2f} | 1.00 |")
    for sampler in args.samplers.split(","):
        for steps in [int(s) for s in args.steps.split(",")]:
            wall, acc, f = measure(sampler, steps)
            print(f"| {sampler} | {steps} | {wall:.2f} | {acc:.1%} | {f:.2f} | {f / base[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
