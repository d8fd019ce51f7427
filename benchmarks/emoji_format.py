"""Which background and resolution the emoji dataset uses (fundiff.emoji), by measurement.

Background: the share of each emoji's opaque pixels (alpha >= 0.5) within 0.1 (max over RGB) of the background
colour -- drawing that would vanish into it -- for white, black and mid grey. Resolution: how much detail each
size keeps (PSNR of the 64x64 image against its area-downsampled copy upsampled back) and what a training step
of the emoji UNet costs there (batch 128, the run's precision choice on this machine).

    python benchmarks/emoji_format.py --tarball-dir DIR   # DIR holds `npm pack emoji-datasource-google@16.0.0`
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import cpu_description


def rgba_images(tarball: Path, limit: int) -> torch.Tensor:
    from PIL import Image

    out = []
    with tarfile.open(tarball, "r:gz") as tar:
        meta = json.load(tar.extractfile("package/emoji.json"))
        names = {f"package/img/google/64/{e['image']}" for e in meta if e.get("has_img_google")}
        for m in tar.getmembers():
            if m.name in names and len(out) < limit:
                im = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGBA")
                out.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(64, 64, 4))
    return torch.stack(out).permute(0, 3, 1, 2).float() / 255


def step_seconds(size: int, hidden: int, dtype) -> float:
    from fundiff.models.unet import UNet, UNetConfig

    torch.manual_seed(0)
    m = UNet(UNetConfig(kind="class", in_channels=3, hidden=hidden, image_size=size, num_classes=5206))
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x, t, c = torch.rand(128, 3, size, size), torch.rand(128), torch.zeros(128, 5206)
    for i in range(4):
        if i == 1:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = (m(x, t, c).float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tarball-dir", required=True)
    p.add_argument("--limit", type=int, default=4000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    args = p.parse_args()
    x = rgba_images(Path(args.tarball_dir) / "emoji-datasource-google-16.0.0.tgz", args.limit)
    rgb, alpha = x[:, :3], x[:, 3:]
    print(f"{x.shape[0]} emoji; CPU: {cpu_description()}, torch {torch.__version__}")
    print("background | opaque pixels within 0.1 of it")
    for name, colour in (("white", 1.0), ("black", 0.0), ("grey", 0.5)):
        near = ((rgb - colour).abs().amax(1, keepdim=True) <= 0.1) & (alpha >= 0.5)
        print(f"{name:>10} | {near.float().sum() / (alpha >= 0.5).float().sum():.1%}")
    on_white = rgb * alpha + (1 - alpha)  # the resolution's detail, measured on white (the background matters little)
    print(f"resolution | PSNR vs 64x64 | train step (hidden {args.hidden}, {args.precision}, batch 128)")
    for size in (32, 48, 64):
        small = on_white if size == 64 else F.interpolate(on_white, size=size, mode="area")
        back = F.interpolate(small, size=64, mode="bilinear", align_corners=False)
        mse = (back - on_white).pow(2).mean().item()
        psnr = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1 / mse)).item()
        print(f"{size:>10} | {psnr:6.1f} dB | {step_seconds(size, args.hidden, args.precision):.2f} s")


if __name__ == "__main__":
    main()
