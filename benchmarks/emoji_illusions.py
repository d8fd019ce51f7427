"""How often the emoji model's visual anagrams and hybrid images read both ways (nearest training emoji in pixels).

    python benchmarks/emoji_illusions.py --model emoji --n 20 --threads 2

Reading: an image "reads as" a prompt when its nearest training emoji (Euclidean distance in pixels,
fundiff.prompt_eval.nearest) is one of the prompt's emoji. Anagrams: the image as is should read as the first
prompt and under the view as the second. Hybrids: from afar (both the image and the training set blurred by one
fixed Gaussian, --afar) as the low prompt; up close as the high prompt, read two ways: the whole image (its low
band, the other prompt's, is there too, so this is the strict reading) and its high band (both the image and the
training set minus their --afar blur: what the eye picks out up close, as the hybrid is made of it);
--hybrid-filters compares the filters that make the hybrid. Chance is about 1 in 1,600 per reading.
"""

from __future__ import annotations

import argparse

import torch

from _common import cpu_description
from fundiff import DEFAULT_SEED, emoji
from fundiff.backends.runs import load_denoiser
from fundiff.prompt_eval import nearest
from fundiff.techniques import anagram_figure, hybrid_figure
from fundiff.views import GaussianFilter

TARGETS = {
    "an old man": ("OLDER MAN",),
    "a campfire": ("FIRE", "CAMPING"),
    "a cat face": ("CAT FACE",),
    "a dog": ("DOG", "DOG FACE"),
    "a snowman": ("SNOWMAN", "SNOWMAN WITHOUT SNOW"),
    "a skull": ("SKULL", "SKULL AND CROSSBONES"),
    "a water wave": ("WATER WAVE",),
    "fire": ("FIRE",),
    "a rocket ship": ("ROCKET",),
    "a ghost": ("GHOST",),
    "a red apple": ("RED APPLE",),
    "a tomato": ("TOMATO",),
    "a full moon": ("FULL MOON SYMBOL",),
    "a cookie": ("COOKIE",),
    "a bear face": ("BEAR FACE",),
    "a panda face": ("PANDA FACE",),
    "a pig face": ("PIG FACE",),
    "a frog face": ("FROG FACE",),
    "a volcano": ("VOLCANO",),
    "mount fuji": ("MOUNT FUJI",),
    "an evergreen tree": ("EVERGREEN TREE",),
    "a christmas tree": ("CHRISTMAS TREE",),
    "a droplet": ("DROPLET",),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="emoji")
    ap.add_argument("--anagrams", default="an old man:a campfire:vflip,a cat face:a dog:rot180,a snowman:a skull:vflip")
    ap.add_argument("--hybrids", default="a skull:a water wave,a cat face:fire,a rocket ship:a snowman")
    ap.add_argument("--hybrid-filters", default="9:1.5,9:2,13:3", help="KERNEL:SIGMA,... of the hybrid's low-pass")
    ap.add_argument("--afar", default="9:2", help="KERNEL:SIGMA of the blur that grades 'seen from afar'")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    den = load_denoiser(args.model, precision="auto", conditional=True)
    train, items = emoji.load(resolution=den.image_size)
    names = [e.name for e in items]

    def reads(x: torch.Tensor, prompt: str, ref: torch.Tensor = train) -> torch.Tensor:
        return torch.tensor([names[int(i)] in TARGETS[prompt] for i in nearest(x.clamp(0, 1), ref)])

    print(f"model={args.model} n={args.n} guidance={args.guidance} threads={torch.get_num_threads()}")
    print(f"torch={torch.__version__} cpu={cpu_description()}")
    print(f"{'anagram':36s} {'as is as p1':>11s} {'view as p2':>10s} {'both':>6s}")
    for case in filter(None, args.anagrams.split(",")):
        p1, p2, view = case.split(":")
        fig = anagram_figure(den, [p1, p2], ["identity", view], n=args.n, guidance=args.guidance, seed=args.seed)
        ok1, ok2 = reads(fig.images["identity"], p1), reads(fig.images[view], p2)
        print(f"{p1 + ' / ' + p2 + ' (' + view + ')':36s} {ok1.float().mean():>11.2f} {ok2.float().mean():>10.2f} "
              f"{(ok1 & ok2).float().mean():>6.2f}", flush=True)  # fmt: skip
    k_afar, s_afar = args.afar.split(":")
    afar = GaussianFilter(int(k_afar), float(s_afar))
    train_afar = (afar.lowpass(train.float() / 255).clamp(0, 1) * 255).round().to(torch.uint8)
    # the high band in [0, 1] as nearest() reads it: 0.5 + (x - blur(x)), on the same uint8 scale as the training set
    train_high = ((afar.highpass(train.float() / 255) + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    print(f"{'hybrid (low / high), filter':40s} {'afar as low':>11s} {'close as high':>13s} {'both':>6s} "
          f"{'high band as high':>17s} {'both':>6s}")  # fmt: skip
    for spec in filter(None, args.hybrid_filters.split(",")):
        kernel, sigma = spec.split(":")
        both, both_band = [], []
        for case in filter(None, args.hybrids.split(",")):
            low, high = case.split(":")
            fig = hybrid_figure(den, low, high, n=args.n, guidance=args.guidance, seed=args.seed,
                                kernel_size=int(kernel), sigma=float(sigma))  # fmt: skip
            x = fig.images["x_0"].clamp(0, 1)
            ok_lo, ok_hi = reads(afar.lowpass(x), low, train_afar), reads(x, high)
            ok_band = reads(afar.highpass(x) + 0.5, high, train_high)
            both.append(float((ok_lo & ok_hi).float().mean()))
            both_band.append(float((ok_lo & ok_band).float().mean()))
            print(f"{low + ' / ' + high + ', ' + spec:40s} {ok_lo.float().mean():>11.2f} "
                  f"{ok_hi.float().mean():>13.2f} {both[-1]:>6.2f} {ok_band.float().mean():>17.2f} "
                  f"{both_band[-1]:>6.2f}", flush=True)  # fmt: skip
        print(f"{'mean of both, filter ' + spec:40s} {'':>11s} {'':>13s} {sum(both) / len(both):>6.2f} {'':>17s} "
              f"{sum(both_band) / len(both_band):>6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
