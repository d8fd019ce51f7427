"""Shared by the benchmark scripts: which CPU a number was measured on, and the class models' grading set-up.

Imported as ``from _common import cpu_description`` (the scripts run as ``python benchmarks/X.py``,
which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import platform

# CPU features that decide fundiff's fast paths: AMX / AVX-512 bf16 for bf16 autocast, AVX-512 for fp32
SPEED_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16", "avx512f")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU model name and which of SPEED_FLAGS it has, e.g. "Intel(R) Xeon(R) ... [amx_bf16 avx512f]".

    Read from the first processor of /proc/cpuinfo (Linux); elsewhere the platform's processor name
    with the flags unknown.
    """
    name, flags = "", None
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key == "flags" and flags is None:
                    flags = set(value.split())
                if name and flags is not None:
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    if flags is None:
        return f"{name} [flags unknown]"
    have = [flag for flag in SPEED_FLAGS if flag in flags]
    return f"{name} [{' '.join(have) if have else 'none of ' + ', '.join(SPEED_FLAGS)}]"


def class_grading(clf, dataset: str, names, n_eval: int, seed: int):
    """What the class-model benchmarks grade with: (FID against the test set in ``clf``'s features, the 100 timed
    prompts (10 per class), the ``n_eval`` graded prompts (n_eval / len(names) per class), their target classes,
    the FID floor: as many train images against the test set, drawn with seed + 1)."""
    import torch

    from fundiff import data
    from fundiff.metrics import FID, reference_fid

    x_test, _ = data.load_split(dataset, train=False)
    fid = FID(clf, data.to_unit_float(x_test))
    per = n_eval // len(names)
    prompts_eval = [n for n in names for _ in range(per)]
    target = torch.arange(len(names)).repeat_interleave(per)
    x_train, _ = data.load_split(dataset, train=True)
    floor = reference_fid(fid, x_train, n=len(prompts_eval), generator=torch.Generator().manual_seed(seed + 1))
    return fid, [n for n in names for _ in range(10)], prompts_eval, target, floor
