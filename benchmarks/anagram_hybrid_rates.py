"""How often fundiff's own classifier reads visual anagrams and hybrid images as intended.

    python benchmarks/anagram_hybrid_rates.py --model mnist-class --classifier mnist-classifier --n 50 --threads 2

Anagrams: for each (prompt pair, view), N samples (each its own noise, from one seed); the
identity view should read as the first prompt and the view as the second. Hybrids: seen
from afar (the low-pass band) the image should read as the low prompt, seen up close (the
whole image) as the high prompt. (The high-pass band alone, edges on gray, is far outside
what the classifier was trained on, so it is not graded.) "From afar" is one fixed blur
(--afar, default the Gaussian kernel 9, sigma 1.5), whatever filter made the hybrid, so that
--hybrid-filters can compare generation filters on the same footing.
"""

from __future__ import annotations

import argparse

import torch

from _common import cpu_description
from fundiff import DEFAULT_SEED
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser
from fundiff.classify import load_classifier
from fundiff.guidance import scale_for
from fundiff.models.classifier import predict
from fundiff.prompts import class_index
from fundiff.techniques import anagram_figure, hybrid_figure
from fundiff.views import GaussianFilter


def _filter(spec: str) -> tuple[int, float]:
    """ "KERNEL:SIGMA" -> (kernel, sigma)."""
    kernel, sigma = spec.split(":")
    return int(kernel), float(sigma)


def _rate(hits: torch.Tensor) -> float:
    """Fraction of True in a (N,) bool tensor."""
    return float(hits.float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class")
    ap.add_argument("--classifier", default="mnist-classifier")
    ap.add_argument("--anagrams", default="6:9:rot180,1:7:vflip,3:8:hflip", help="PROMPT1:PROMPT2:VIEW,...")
    ap.add_argument("--hybrids", default="0:1,8:3,7:1", help="LOW:HIGH,...")
    ap.add_argument("--hybrid-filters", default="9:1.5", help="generation filters KERNEL:SIGMA,... to compare")
    ap.add_argument("--afar", default="9:1.5", help="KERNEL:SIGMA of the blur that grades 'seen from afar'")
    ap.add_argument("--n", type=int, default=50, help="samples (seeds) per case")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default 5; a distilled model: its own)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    den = load_denoiser(args.model, device=device, precision=args.precision, conditional=True)
    clf, _ = load_classifier(args.classifier, device=device)
    names = den.default_prompts
    args.guidance = scale_for(den, args.guidance)
    timesteps = ts.for_model(den, steps=args.steps)
    print(f"model={args.model} classifier={args.classifier} n={args.n} guidance={args.guidance} steps={len(timesteps)}")
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} cpu={cpu_description()}")
    print(f"{'anagram':28s} {'view 1 as p1':>12s} {'view 2 as p2':>12s} {'both':>6s}")
    for case in filter(None, args.anagrams.split(",")):
        p1, p2, view = case.split(":")
        fig = anagram_figure(
            den, [p1, p2], ["identity", view], n=args.n, guidance=args.guidance, seed=args.seed, timesteps=timesteps
        )
        k1, k2 = class_index(p1, names), class_index(p2, names)
        ok1 = predict(clf, fig.images["identity"].clamp(0, 1)) == k1
        ok2 = predict(clf, fig.images[view].clamp(0, 1)) == k2
        label = f"{names[k1]} / {names[k2]} ({view})"
        print(f"{label:28s} {_rate(ok1):>12.2f} {_rate(ok2):>12.2f} {_rate(ok1 & ok2):>6.2f}")
    afar = GaussianFilter(*_filter(args.afar))
    print(f"{'hybrid (low / high), filter':34s} {'afar as low':>12s} {'close as high':>13s} {'both':>6s}")
    for spec in filter(None, args.hybrid_filters.split(",")):
        kernel, sigma = _filter(spec)
        both = []
        for case in filter(None, args.hybrids.split(",")):
            low, high = case.split(":")
            fig = hybrid_figure(
                den, low, high, n=args.n, guidance=args.guidance, seed=args.seed, kernel_size=kernel, sigma=sigma,
                timesteps=timesteps,
            )  # fmt: skip
            k_lo, k_hi = class_index(low, names), class_index(high, names)
            x = fig.images["x_0"].clamp(0, 1)
            ok_lo = predict(clf, afar.lowpass(x).clamp(0, 1)) == k_lo  # from afar: blurred
            ok_hi = predict(clf, x) == k_hi  # up close: the whole image
            both.append(_rate(ok_lo & ok_hi))
            label = f"{names[k_lo]} / {names[k_hi]}, {kernel}/{sigma:g}"
            print(f"{label:34s} {_rate(ok_lo):>12.2f} {_rate(ok_hi):>13.2f} {both[-1]:>6.2f}", flush=True)
        print(f"{'mean of both, filter ' + spec:34s} {'':>12s} {'':>13s} {sum(both) / len(both):>6.2f}", flush=True)


if __name__ == "__main__":
    main()
