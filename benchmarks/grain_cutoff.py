"""Where a flow model's background grain comes from: its sampling with the last, nearly clean, steps left out.

    python benchmarks/grain_cutoff.py --threads 2 --model mnist-class --guidance 5 --cuts 0,30,60
    python benchmarks/grain_cutoff.py --threads 2 --model mnist-time --cuts 0,1,10,30   # unconditional: no accuracy

The model's default timesteps (the write-up's 35 strided steps for a flow model) without those below each cut:
the sampler's last step then goes from the last kept timestep straight to the clean image. For each cut: class
accuracy, FID (fundiff's classifier features; floor: as many train images against the test set) and grain
(metrics.background_grain) on --n samples, --n / 10 per class, at CFG --guidance, with the model's own sampler.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import class_grading, cpu_description
from fundiff import DEFAULT_SEED, samplers
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser
from fundiff.classify import load_classifier
from fundiff.evaluation import draw_samples
from fundiff.guidance import CFG
from fundiff.metrics import background_grain, class_accuracy


class _UnguidedBelow(CFG):
    """``cfg``'s guidance at timesteps >= ``t_min``, the conditional pass alone below (a guidance interval)."""

    def __init__(self, cfg: CFG, t_min: int) -> None:
        super().__init__(cfg.denoiser, cfg.scale)
        self.t_min = t_min

    def __call__(self, x_t, t, cond):
        if int(t.max()) < self.t_min:
            return self.denoiser(x_t, t, cond)
        return super().__call__(x_t, t, cond)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class")
    ap.add_argument("--classifier", default="mnist-classifier")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--cuts", default="0,30,60", help="comma-separated: leave out the timesteps below each")
    ap.add_argument("--sampler", default=None, help="a sampler (default: the model's own)")
    ap.add_argument("--steps", type=int, default=None, help="this many steps (default: the model's own)")
    ap.add_argument("--unguided-below", type=int, default=0,
                    help="no CFG below this timestep (the conditional pass alone): is grain guidance's?")  # fmt: skip
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", help="the model's arithmetic, as every command's --precision")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clf, _ = load_classifier(args.classifier)
    den = load_denoiser(args.model, precision=args.precision)
    conditional = den.kind == "class"
    names = den.default_prompts if conditional else ("",) * 10  # a time model: the null prompt only
    fid, _, prompts, target, floor = class_grading(clf, args.dataset, names, args.n, args.seed)
    sampler, full = args.sampler or samplers.default_sampler_of(den), ts.for_model(den, steps=args.steps)
    print(cpu_description())
    print(f"model={args.model} CFG {args.guidance if conditional else 1:g} (none below t = {args.unguided_below}) "
          f"sampler={sampler} "
          f"precision={args.precision} threads={torch.get_num_threads()}; seed {args.seed}; "
          f"FID floor {floor:.2f}")  # fmt: skip
    print("| timesteps kept | steps | last t | accuracy | FID | grain | seconds |\n|---|---|---|---|---|---|---|")
    model = CFG(den, args.guidance) if conditional else den
    if conditional and args.unguided_below:
        model = _UnguidedBelow(model, args.unguided_below)
    for cut in (int(c) for c in args.cuts.split(",")):
        timesteps = [t for t in full if t >= cut]
        t0 = time.perf_counter()
        x = draw_samples(model, prompts, timesteps, generator=torch.Generator().manual_seed(args.seed + 2),
                         sampler=sampler)  # fmt: skip
        acc = f"{class_accuracy(clf, x, target, num_classes=len(names)).overall:.1%}" if conditional else "-"
        print(f"| t >= {cut} | {len(timesteps)} | {timesteps[-1]} | {acc} | {fid(x):.2f} | "
              f"{background_grain(x):.1%} | {time.perf_counter() - t0:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
