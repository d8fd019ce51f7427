"""Training throughput (images/s) of the write-up's UNet on this machine, several paths side by side.

    python benchmarks/train_speed.py --kind class --threads 2 --steps 30

Each path runs the same optimizer steps on random data (batch as in the paper preset);
the first steps are warm-up and not timed. Compare the ratios from one run only.
"""

from __future__ import annotations

import argparse
import time

import torch

from fundiff.models.unet import UNet, UNetConfig
from fundiff.training import PRESETS, TrainConfig, _loss
from fundiff.denoisers import autocast_for
from fundiff.schedules import NoiseSchedule


def measure(kind: str, hidden: int, batch: int, *, amp: torch.dtype | None, channels_last: bool, steps: int, warmup: int = 3) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = UNet(UNetConfig(kind=kind, hidden=hidden)).to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    cfg = TrainConfig(kind=kind, hidden=hidden, batch_size=batch)
    schedule = NoiseSchedule.linear(cfg.T)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with autocast_for(torch.device("cpu"), amp):
            loss = _loss(model, cfg, schedule, x, y, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="class", choices=("denoiser", "time", "class"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    p = PRESETS["paper"][args.kind]
    hidden, batch = args.hidden or p["hidden"], args.batch or p["batch_size"]
    print(f"kind={args.kind} D={hidden} batch={batch} threads={torch.get_num_threads()} torch={torch.__version__}")
    base = None
    for name, amp, cl in [("fp32", None, False), ("fp32 + channels_last", None, True), ("bf16 autocast", torch.bfloat16, False), ("bf16 autocast + channels_last", torch.bfloat16, True)]:
        ips = measure(args.kind, hidden, batch, amp=amp, channels_last=cl, steps=args.steps)
        base = base or ips
        print(f"{name:32s} {ips:8.0f} images/s  x{ips / base:.2f}")


if __name__ == "__main__":
    main()
