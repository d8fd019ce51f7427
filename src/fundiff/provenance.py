"""Where a result came from: file hashes, git and machine facts, model facts, portable and reproducing commands,
and the manifest that gathers them (written by the tour and the web UI, read by the report).

Every record fundiff leaves beside a run, a tour section or a UI run is built here, so that the training run's
config.json, a shipped model's card, the tour's manifest.json and a UI run's manifest.json say the same thing the
same way. Nothing here records an absolute path of the machine (:func:`portable_command`, :func:`strip_paths`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

import fundiff
from fundiff.devices import cpu_name, resolve_precision
from fundiff.errors import FundiffError

MANIFEST_FORMAT = "fundiff-tour/1"


# -- file hashes ---------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_files(root: Path, paths: Iterable[Path]) -> dict[str, str]:
    """{path relative to ``root`` (POSIX): sha256} for ``paths``, sorted by path."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(paths)}


def files_intact(root: Path, files: Mapping[str, str]) -> bool:
    """True when every ``files`` entry (relative path -> sha256) exists under ``root`` with that hash."""
    return all((root / rel).is_file() and sha256_file(root / rel) == digest for rel, digest in files.items())


# -- git and machine -----------------------------------------------------------------------------------
@functools.cache
def git_commit() -> str | None:
    """HEAD of the git checkout fundiff is imported from, or None (installed package, no git)."""
    src = Path(fundiff.__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def software_facts() -> dict:
    """fundiff's version and git commit."""
    return {"version": fundiff.__version__, "git_commit": git_commit()}


def machine_facts(device: torch.device | str) -> dict:
    """The CPU's model name, the GPU's (CUDA) or None, the device and torch's thread count."""
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu_name(), "gpu": gpu, "device": str(device), "threads": torch.get_num_threads()}


def run_info(precision: str, device: torch.device) -> dict:
    """The machine facts recorded in a training run's config.json (for model cards and benchmarks):
    device, CPU, threads, torch and the arithmetic ``precision`` (devices.PRECISIONS) resolves to there."""
    return {
        "machine": {
            "device": str(device),
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "precision": str(resolve_precision(precision, device) or torch.float32).replace("torch.", ""),
        }
    }


# -- models --------------------------------------------------------------------------------------------
def model_facts(name: str, folder: Path, *, fallback_T: int | None = None) -> dict:
    """A model's facts for a manifest: its name as given, kind, dataset, T and the SHA-256 of its weights.

    ``folder`` is a fundiff run (config.json) or another backend's folder (DeepFloyd IF: kind
    "deepfloyd-if", T ``fallback_T``, no single weights file)."""
    from fundiff.checkpoints import load_config

    try:
        train = load_config(folder).get("train", {})
    except FundiffError:
        train = {"kind": "deepfloyd-if", "T": fallback_T}
    weights = folder / "model.safetensors"
    return {
        "name": name,
        "kind": train.get("kind"),
        "dataset": train.get("dataset"),
        "T": train.get("T") if train.get("kind") != "denoiser" else None,
        "file": weights.name if weights.is_file() else None,
        "sha256": sha256_file(weights) if weights.is_file() else None,
    }


# -- commands and paths --------------------------------------------------------------------------------
def portable_command(argv: Sequence[str], *, cwd: str | Path | None = None, home: str | Path | None = None) -> str:
    """``argv`` as one line without the machine's absolute paths, for config.json.

    A path under ``cwd`` (default: the working folder) becomes relative, one under ``home``
    becomes "~/...", any other absolute path keeps only its name (".../name"); in
    "--opt=value" only the value is rewritten.
    """
    cwd, home = Path(cwd or os.getcwd()), Path(home or Path.home())

    def portable(arg: str) -> str:
        if arg.startswith("--") and "=" in arg:
            opt, _, value = arg.partition("=")
            return f"{opt}={portable(value)}"
        if not os.path.isabs(arg):
            return arg
        p = Path(arg)
        for base, name in ((cwd, "."), (home, "~")):
            if p == base or base in p.parents:
                return (Path(name) / p.relative_to(base)).as_posix()
        return f".../{p.name}"

    return " ".join(portable(a) for a in argv)


def command_line(argv: Sequence[str]) -> str:
    """A ``fundiff ...`` argv as the one shell line a person pastes (quoted where needed)."""
    return shlex.join(argv)


# an absolute POSIX path (not the "//" of a URL) or a Windows drive path, up to whitespace or a quote
_ABS_PATH = re.compile(r"""(?<![\w.:/~-])/[^\s"',;]*|\b[A-Za-z]:\\[^\s"',;]*""")


def _last_part(match: re.Match) -> str:
    path = match.group(0)
    name = (PurePosixPath(path) if path.startswith("/") else PureWindowsPath(path)).name
    return name or "."


def strip_paths(obj: Any) -> Any:
    """A copy of a JSON value in which every absolute path, whole or inside a string, is cut to its last component.

    "/work/main/runs/mnist-class" -> "mnist-class"; "fundiff train --out /tmp/runs/q" -> "fundiff train --out q".
    """
    if isinstance(obj, str):
        return _ABS_PATH.sub(_last_part, obj)
    if isinstance(obj, dict):
        return {k: strip_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strip_paths(v) for v in obj]
    return obj


# -- the manifest --------------------------------------------------------------------------------------
def manifest(
    *,
    command: str,
    device: torch.device | str,
    seed: int,
    sampler: str | None,
    sizes: dict,
    dataset: str | None,
    models: dict[str, dict],
    sections: list[dict],
    wall_s: float,
) -> dict:
    """manifest.json's content (the format the report reads), as JSON reads it back (lists, not tuples).

    ``sections``: entries with their ``files`` ({relative path: sha256}); a ``key`` entry (the tour's resume
    key) is left out. ``models``: {role: :func:`model_facts`}."""
    import json

    out = {
        "format": MANIFEST_FORMAT,
        "command": command,
        "fundiff": software_facts(),
        "torch": torch.__version__,
        "machine": machine_facts(device),
        "seed": seed,
        "sampler": sampler,
        "sizes": sizes,
        "dataset": dataset,
        "models": models,
        "wall_s": round(wall_s, 2),
        "sections": [{k: v for k, v in e.items() if k != "key"} for e in sections],
        "files": {rel: digest for e in sections for rel, digest in e["files"].items()},
    }
    return json.loads(json.dumps(out))
