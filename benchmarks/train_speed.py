"""Training throughput of the write-up's UNet on this machine: fp32 eager vs fundiff's default path,
vs diffusers' UNet2DModel of comparable size, with achieved GFLOP/s. One run, ratios side by side.

    python benchmarks/train_speed.py --kind class --threads 2

Every path runs the same Adam steps on random 28x28 batches (batch as in the paper preset);
warm-up steps are not timed. FLOPs per step (forward + backward) come from
torch.utils.flop_counter; the nominal peak is cores x clock x FLOP/cycle (see --peak-*),
an upper bound to read achieved numbers against, not a measurement. FLOP/cycle follow the
CPU's flags: fp32 64 with AVX-512 (2 FMA units), 32 with AVX2; bf16 1024 with AMX, 128 with
AVX512-BF16 only, else no bf16 units (bf16 is emulated: the fp32 peak). The "auto" row is
what `--precision auto` (devices.choose_precision, cached per machine) picks for training.
"""

from __future__ import annotations

import argparse
import time

import torch

from fundiff.devices import autocast_for, choose_precision, cpu_flags, cpu_name
from fundiff.models.unet import UNet, UNetConfig
from fundiff.schedules import NoiseSchedule
from fundiff.training import PRESETS, TrainConfig, batch_loss


class DiffusersNet(torch.nn.Module):
    """diffusers' UNet2DModel (class-conditioned via class embeddings, 10 = null) behind fundiff's UNet call."""

    def __init__(self, channels=(32, 64, 112)) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.net = UNet2DModel(
            sample_size=28,
            in_channels=1,
            out_channels=1,
            block_out_channels=channels,
            layers_per_block=1,
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            norm_num_groups=16,
            num_class_embeds=11,
        )

    def forward(self, x, t=None, c=None):
        labels = torch.where(c.sum(1) > 0, c.argmax(1), torch.full_like(c[:, 0], 10, dtype=torch.long))
        return self.net(x, t * 299, class_labels=labels).sample


def _step_fn(model, cfg, amp, fmt, batch):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = NoiseSchedule.linear(cfg.T)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))

    def step():
        with autocast_for(torch.device("cpu"), amp):
            loss = batch_loss(model, cfg, schedule, x, y, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(model, cfg, *, amp, channels_last, batch, steps, warmup=3) -> tuple[float, float]:
    """(images/s, GFLOP per step) for ``steps`` timed training steps."""
    from torch.utils.flop_counter import FlopCounterMode

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    step = _step_fn(model, cfg, amp, fmt, batch)
    with FlopCounterMode(display=False) as counter:
        step()
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0), counter.get_total_flops() / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="class", choices=("denoiser", "time", "class"))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=15, help="timed steps per path")
    ap.add_argument("--no-diffusers", action="store_true", help="skip diffusers' UNet2DModel")
    ap.add_argument("--clock-ghz", type=float, default=None, help="nominal clock (default: /proc/cpuinfo)")
    ap.add_argument(
        "--peak-fp32-per-cycle", type=float, default=None, help="FP32 FLOP/cycle/core (default: from the CPU flags)"
    )
    ap.add_argument(
        "--peak-bf16-per-cycle", type=float, default=None, help="BF16 FLOP/cycle/core (default: from the CPU flags)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    p = PRESETS["paper"][args.kind]
    hidden, batch = p["hidden"], p["batch_size"]
    cfg = TrainConfig(kind=args.kind, hidden=hidden, batch_size=batch)
    ghz = args.clock_ghz or _clock_ghz()
    flags = sorted({"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"} & cpu_flags())
    per32, per16 = _flop_per_cycle(set(flags))
    per32, per16 = args.peak_fp32_per_cycle or per32, args.peak_bf16_per_cycle or per16
    peak32, peak16 = threads * ghz * per32, threads * ghz * per16
    print(f"kind={args.kind} D={hidden} batch={batch} threads={threads} torch={torch.__version__}")
    print(f"cpu: {cpu_name()}; flags: {' '.join(flags) or 'none of amx/avx512/avx2'}")
    print(
        f"nominal peak: fp32 {peak32:.0f} GFLOP/s ({per32:.0f}/cycle), bf16 {peak16:.0f} GFLOP/s ({per16:.0f}/cycle)"
        f" ({threads} cores x {ghz:.2f} GHz)"
    )
    auto = _auto_choice(args.kind, hidden, batch, threads)
    print(f"auto (the default) picks {auto.name}{' + channels_last' if auto.channels_last else ''} ({auto.source})")
    print(f"{'path':44s} {'params':>7s} {'img/s':>7s} {'ratio':>6s} {'GFLOP/s':>8s} {'% peak':>7s}")
    paths = _paths(args.kind, hidden, auto, diffusers=args.kind == "class" and not args.no_diffusers)
    base = None
    for name, make, amp, cl in paths:
        torch.manual_seed(0)
        model = make()
        n_params = sum(q.numel() for q in model.parameters())
        ips, gflop = measure(model, cfg, amp=amp, channels_last=cl, batch=batch, steps=args.steps)
        base = base or ips
        achieved = gflop * ips / batch
        peak = peak16 if amp is not None else peak32
        share = 100 * achieved / peak
        print(f"{name:44s} {n_params / 1e6:6.2f}M {ips:7.0f} {ips / base:5.2f}x {achieved:8.1f} {share:6.1f}%")


def _paths(kind: str, hidden: int, auto, *, diffusers: bool) -> list[tuple]:
    """(name, model factory, autocast dtype, channels_last) of each path to time."""

    def fundiff_unet():
        return UNet(UNetConfig(kind=kind, hidden=hidden))

    auto_name = f"fundiff UNet, auto (the default): {auto.name}{' + CL' if auto.channels_last else ''}"
    paths = [
        ("fundiff UNet, fp32 eager", fundiff_unet, None, False),
        ("fundiff UNet, bf16 autocast", fundiff_unet, torch.bfloat16, False),
        ("fundiff UNet, bf16 + channels_last", fundiff_unet, torch.bfloat16, True),
        (auto_name, fundiff_unet, auto.dtype, auto.channels_last),
    ]
    if diffusers:
        paths += [
            ("diffusers UNet2DModel, fp32", DiffusersNet, None, False),
            ("diffusers UNet2DModel, bf16 + channels_last", DiffusersNet, torch.bfloat16, True),
        ]
    return paths


def _flop_per_cycle(flags: set[str]) -> tuple[float, float]:
    """Nominal (fp32, bf16) FLOP/cycle/core from the CPU flags; no bf16 units -> bf16 peak = fp32 peak."""
    fp32 = 64.0 if "avx512f" in flags else 32.0 if "avx2" in flags else 16.0
    bf16 = 1024.0 if "amx_bf16" in flags else 128.0 if "avx512_bf16" in flags else fp32
    return fp32, bf16


def _auto_choice(kind: str, hidden: int, batch: int, threads: int):
    """What `fundiff train --precision auto` uses for this model, batch and thread count."""
    from functools import partial

    from fundiff.models.unet import example_inputs

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = UNet(UNetConfig(kind=kind, hidden=hidden))
    make_batch = partial(example_inputs, model.config, batch, torch.device("cpu"))
    return choose_precision(model, make_batch, torch.device("cpu"), mode="train", threads=threads)


def _clock_ghz() -> float:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1]) / 1000
    except OSError:
        pass
    return 2.0


if __name__ == "__main__":
    main()
