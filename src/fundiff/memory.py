"""Process memory: keep freed memory instead of returning it to the kernel every step; and how much memory a
UNet batch needs (estimated) against how much the machine has (checked before a command allocates it).

A UNet forward pass on a CFG batch allocates and frees activations of tens of MB many
times. glibc serves allocations above its mmap threshold (128 KiB, adapting up to 32 MiB)
with fresh ``mmap`` calls and unmaps them on ``free``, so every step pays for millions of
minor page faults: on a 2-core Xeon, sampling spent more time in the kernel than in the
UNet (``benchmarks/allocator.py`` measures it). Raising the mmap and trim thresholds makes
glibc keep and reuse that memory. This changes process state, so library code never calls
it: the ``fundiff`` command does at start-up, and a Python user may call it once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h) and the values fundiff sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 1 << 30  # serve allocations below 1 GiB from the heap, never a fresh mmap
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free memory at the top of the heap
TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps (untouched pages cost no memory)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (Linux/glibc only). True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)


# -- how much memory a batch needs, and how much the machine has ------------------------------------------
# Measured on a 2-core Xeon (torch 2.10, CPU, fp32, hidden 64, 28x28; peak RSS growth, resource.ru_maxrss):
# training forward + backward at batch 64 / 256 peaked at ~1.25x the bytes the autograd graph saves (counted
# exactly by saved_bytes), a no-grad forward at ~0.45x (2.0-2.4 MiB an image at batch 512 / 128). The
# estimates below take 1.5x and 0.5x, plus the parameters (training: weights, grads, Adam's two moments, EMA).
TRAIN_ACTIVATION_FACTOR = 1.5
INFER_ACTIVATION_FACTOR = 0.5
TRAIN_PARAM_COPIES = 5


def saved_bytes(config, n: int) -> int:
    """Bytes that a training forward of the UNet ``config`` (a models.unet.UNetConfig) on a batch of ``n`` saves
    for backward: counted on PyTorch's meta device (shapes only, nothing allocated, any ``n`` in ~0.3 s)."""
    import torch

    from fundiff.models.unet import UNet

    with torch.device("meta"):
        net = UNet(config).train()
        side = config.image_size
        args = [torch.empty(n, config.in_channels, side, side)]
        if config.kind != "denoiser":
            args.append(torch.empty(n))
        if config.kind == "class":
            args.append(torch.empty(n, config.num_classes))
    seen: dict[int, int] = {}

    def pack(t):
        seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(*args)
    return sum(seen.values())


def param_bytes(config) -> int:
    """Bytes of the UNet ``config``'s parameters (fp32)."""
    import torch

    from fundiff.models.unet import UNet

    with torch.device("meta"):
        return sum(p.numel() * 4 for p in UNet(config).parameters())


def training_bytes(config, batch: int) -> int:
    """Estimated peak memory of training the UNet ``config`` at ``batch`` images a step (see the factors above)."""
    return round(TRAIN_ACTIVATION_FACTOR * saved_bytes(config, batch)) + TRAIN_PARAM_COPIES * param_bytes(config)


def sampling_bytes(config, batch: int) -> int:
    """Estimated peak memory of one no-grad UNet forward on ``batch`` images (one sampling step)."""
    return round(INFER_ACTIVATION_FACTOR * saved_bytes(config, batch)) + param_bytes(config)


def available_bytes(device=None) -> int | None:
    """Memory a new allocation can get on ``device``: a CUDA device's free memory, else the smaller of
    /proc/meminfo's MemAvailable and the cgroup's memory.max minus memory.current; None where unknown."""
    import torch

    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            found.append(int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"
