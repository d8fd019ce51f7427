"""Devices and numeric precision: which device to run on, autocast dtype, autocast contexts, CPU facts."""

from __future__ import annotations

import functools
import platform
from contextlib import nullcontext

import torch

from fundiff.errors import FundiffError

PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast dtype, or None for fp32. "auto" picks bf16 where the hardware has it."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_bf16() else None
    return None


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's "key: value" lines of /proc/cpuinfo ({} where there is none, e.g. macOS)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_name() -> str:
    """The CPU's model name, e.g. "Intel(R) Xeon(R) Platinum 8480+" (/proc/cpuinfo; else platform's guess)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (/proc/cpuinfo "flags", e.g. avx512f, avx512_bf16, amx_bf16); empty if unknown."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AMX or AVX512-BF16), not just emulation."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def resolve_device(device: str | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU; a one-line error if unusable."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise FundiffError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FundiffError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` (e.g. bfloat16) on ``device``, or a no-op for None/float32."""
    if dtype is None or dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
