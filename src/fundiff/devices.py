"""Devices and numeric precision: which device to run on, autocast dtype, autocast contexts, CPU facts,
and the measured choice of precision and memory format (``choose_precision``, cached per machine)."""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from fundiff.atomic import atomic_write_json
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


# -- measured precision ----------------------------------------------------------------------
PrecisionMode = Literal["train", "infer"]
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
DEFAULT_CHANNELS_LAST = {"train": True, "infer": False}  # when the precision is forced and the caller says nothing


@dataclass(frozen=True)
class PrecisionChoice:
    """How to run a model: autocast ``dtype`` (None: plain fp32) and memory format, and why."""

    dtype: torch.dtype | None  # torch.bfloat16, torch.float16 or None (fp32)
    channels_last: bool  # NHWC memory format for the model and its 4-D inputs
    source: str  # "measured" (timed now), "cached" (timed before on this machine), "forced" (asked for), "cuda"
    timings: dict[str, float] = field(default_factory=dict, compare=False)  # s per step by candidate, when measured

    @property
    def name(self) -> str:
        return PRECISION_NAMES[self.dtype]

    def to_dict(self) -> dict:
        return {"precision": self.name, "channels_last": self.channels_last, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None) -> PrecisionChoice:
        dtype = {v: k for k, v in PRECISION_NAMES.items()}[d["precision"]]
        return cls(dtype, bool(d["channels_last"]), source or d["source"], dict(d.get("timings", {})))


def precision_cache_path() -> Path:
    """$FUNDIFF_CACHE/precision.json, else $XDG_CACHE_HOME/fundiff/precision.json, else ~/.cache/fundiff/..."""
    root = os.environ.get("FUNDIFF_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fundiff"
    return Path(root) / "precision.json"


def choose_precision(
    model: nn.Module,
    make_batch: Callable[[], tuple[Tensor, ...]],
    device: torch.device,
    *,
    mode: PrecisionMode,
    threads: int | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    budget_s: float = 8.0,
    max_timing_batch: int = 64,
) -> PrecisionChoice:
    """The fastest of {fp32, bf16 autocast} x {channels_last off, on} for ``model`` on ``device``.

    ``make_batch()`` gives the model's positional inputs (a batch of the size that will run);
    ``mode`` "train" times forward + backward, "infer" a no-grad forward in eval mode, each on
    a copy of ``model`` (the model itself is not touched) with ``threads`` torch threads, on
    the first ``max_timing_batch`` images (per-image cost barely depends on the batch size
    beyond that, and it keeps the timing within ~``budget_s`` seconds; see _measure). The
    pick is cached in precision_cache_path() under the CPU model and bf16 flags, torch
    version, model, batch shapes, threads, device and mode.

    ``precision`` "fp32"/"bf16" is taken as given (no timing); so is ``channels_last`` when not
    None (then only the precisions are compared). On CUDA, no timing: bf16 where supported,
    else fp16 for inference and fp32 for training (fp16 training would need a gradient scaler);
    channels_last only if asked for. Other devices (e.g. mps): fp32.
    """
    threads = threads or torch.get_num_threads()
    if precision not in PRECISIONS:
        raise FundiffError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto" or device.type not in ("cpu", "cuda"):
        dtype = torch.bfloat16 if precision == "bf16" else None
        cl = DEFAULT_CHANNELS_LAST[mode] if channels_last is None else channels_last
        return PrecisionChoice(dtype, cl, "forced")
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else (torch.float16 if mode == "infer" else None)
        return PrecisionChoice(dtype, bool(channels_last), "cuda")
    batch = make_batch()
    key = _precision_key(model, batch, device, mode=mode, threads=threads, channels_last=channels_last)
    cache = _read_precision_cache()
    if key in cache:
        return PrecisionChoice.from_dict(cache[key], source="cached")
    formats = (True, False) if channels_last is None else (channels_last,)
    candidates = {
        f"{PRECISION_NAMES[dtype]}{' channels_last' if cl else ''}": (dtype, cl)
        for dtype in (torch.bfloat16, None)
        for cl in formats
    }
    timing_batch = tuple(x[:max_timing_batch] for x in batch)
    timings = _measure(model, timing_batch, device, candidates, mode=mode, threads=threads, budget_s=budget_s)
    best = min(timings, key=timings.__getitem__)
    choice = PrecisionChoice(*candidates[best], "measured", timings)
    _write_precision_cache(key, {**choice.to_dict(), "timings": {k: round(v, 5) for k, v in timings.items()}})
    return choice


def _precision_key(model: nn.Module, batch, device, *, mode, threads, channels_last) -> str:
    config = getattr(model, "config", None)
    facts = {
        "cpu": cpu_name(),
        "flags": sorted({"amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"} & cpu_flags()),
        "torch": torch.__version__,
        "model": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict() if hasattr(config, "to_dict") else None,
        "batch": [list(x.shape) for x in batch],
        "threads": threads,
        "device": str(device),
        "mode": mode,
        "channels_last": channels_last,
    }
    return json.dumps(facts, sort_keys=True)


def _read_precision_cache() -> dict:
    """The cache's valid entries {key: entry}. A file of any other shape (not JSON, no "choices" object) counts
    as empty and an entry that from_dict could not read (not an object, an unknown precision, a non-boolean
    channels_last, timings that are no {name: seconds}) is dropped: the choice is measured again and the file is
    rewritten without it by the next _write_precision_cache."""
    try:
        cache = json.loads(precision_cache_path().read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}
    choices = cache.get("choices") if isinstance(cache, dict) else None
    if not isinstance(choices, dict):
        return {}
    return {k: v for k, v in choices.items() if _valid_cache_entry(v)}


def _valid_cache_entry(entry) -> bool:
    if not isinstance(entry, dict) or entry.get("precision") not in PRECISION_NAMES.values():
        return False
    timings = entry.get("timings", {})
    return (
        isinstance(entry.get("channels_last"), bool)
        and isinstance(timings, dict)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in timings.values())
    )


def _write_precision_cache(key: str, entry: dict) -> None:
    choices = {**_read_precision_cache(), key: entry}  # re-read: another process may have added entries
    try:
        atomic_write_json(precision_cache_path(), {"format": "fundiff-precision/1", "choices": choices})
    except OSError:  # a read-only home: the choice just is not remembered
        pass


def _measure(
    model: nn.Module,
    batch: tuple[Tensor, ...],
    device: torch.device,
    candidates: dict[str, tuple[torch.dtype | None, bool]],
    *,
    mode: PrecisionMode,
    threads: int,
    budget_s: float,
    min_rounds: int = 2,
    max_rounds: int = 5,
) -> dict[str, float]:
    """Fastest seconds of one step per candidate (name -> (autocast dtype, channels_last)).

    Each candidate runs a copy of ``model``: one warm-up step (allocations, oneDNN kernel
    choice), then rounds of one timed step each, interleaved so that a noisy neighbour slows
    all candidates alike, until ``budget_s`` (warm-ups included) is spent, at least
    ``min_rounds`` and at most ``max_rounds``. The minimum, not the median: other processes
    only ever add time, so the fastest step is the closest to the candidate's own cost.
    """
    steps = {name: _step_fn(model, batch, device, dtype, cl, mode) for name, (dtype, cl) in candidates.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t_end = time.perf_counter() + budget_s
        for step in steps.values():
            step()
        rounds = 0
        while rounds < min_rounds or (time.perf_counter() < t_end and rounds < max_rounds):
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - t0)
            rounds += 1
    finally:
        torch.set_num_threads(old_threads)
    return {name: min(ts) for name, ts in times.items()}


def _step_fn(model, batch, device, dtype, channels_last, mode: PrecisionMode) -> Callable[[], None]:
    """One step (train: forward + backward; infer: no-grad forward in eval mode) of a copy of ``model``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = copy.deepcopy(model).to(device, memory_format=fmt).train(mode == "train")
    args = [x.to(device).contiguous(memory_format=fmt) if x.ndim == 4 else x.to(device) for x in batch]

    def step() -> None:
        with torch.set_grad_enabled(mode == "train"), autocast_for(device, dtype):
            out = net(*args)
        if mode == "train":
            out.float().square().mean().backward()
            net.zero_grad(set_to_none=True)

    return step
