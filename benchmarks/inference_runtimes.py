"""One CFG-batch forward of the class UNet (200 images) in torch's paths and, if installed, ONNX Runtime.

    python benchmarks/inference_runtimes.py --threads 2

Rows, interleaved over --rounds so a noisy neighbour slows all alike (fastest round shown): torch
fp32, fp32 + channels_last, bf16 autocast (+ channels_last), the path ``--precision auto`` picks,
and ONNX Runtime fp32 on the same graph (``pip install onnxruntime onnx``; skipped otherwise),
whose outputs are checked against torch's. The process keeps freed memory as ``fundiff`` does.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from _common import cpu_description
from fundiff.backends.runs import load, resolve
from fundiff.devices import autocast_for, choose_precision
from fundiff.memory import keep_freed_memory


def _torch_path(net, x, t, c, dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = copy.deepcopy(net).to(memory_format=fmt)
    xx = x.contiguous(memory_format=fmt)

    def run():
        with torch.no_grad(), autocast_for(torch.device("cpu"), dtype):
            return model(xx, t, c).float()

    return run


def _onnx_path(net, x, t, c, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    path = Path(tempfile.mkdtemp()) / "unet.onnx"
    torch.onnx.export(net, (x, t, c), str(path), input_names=["x", "t", "c"], dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "t": t.numpy(), "c": c.numpy()}
    return lambda: torch.from_numpy(session.run(None, feed)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class", help="class-conditioned run folder or shipped name")
    ap.add_argument("--batch", type=int, default=200, help="images per forward (100 CFG samples = 200)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    net, _ = load(resolve(args.model))
    net = net.float().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28, generator=g)
    t = torch.rand(args.batch, generator=g)
    c = torch.eye(10)[torch.arange(args.batch) % 10]
    auto = choose_precision(net, lambda: (x[:64], t[:64], c[:64]), torch.device("cpu"), mode="infer")
    paths = {
        "torch fp32": _torch_path(net, x, t, c, None, False),
        "torch fp32 + channels_last": _torch_path(net, x, t, c, None, True),
        "torch bf16 autocast": _torch_path(net, x, t, c, torch.bfloat16, False),
        "torch bf16 + channels_last": _torch_path(net, x, t, c, torch.bfloat16, True),
        f"auto ({auto.name}{' + channels_last' if auto.channels_last else ''})": _torch_path(
            net, x, t, c, auto.dtype, auto.channels_last
        ),
    }
    onnx = _onnx_path(net, x, t, c, args.threads)
    if onnx is not None:
        paths["ONNX Runtime fp32"] = onnx
    ref = paths["torch fp32"]()
    diffs = {name: float((run() - ref).abs().max()) for name, run in paths.items()}  # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    print(cpu_description())
    print(f"model={args.model} batch={args.batch} threads={args.threads} torch={torch.__version__}")
    base = min(times["torch fp32"])
    print("| path | ms per forward | vs torch fp32 | max abs diff to fp32 |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts) * 1000:.0f} | {base / min(ts):.2f}× | {diffs[name]:.1e} |")


if __name__ == "__main__":
    main()
