"""Every command that samples, run with its defaults: how many timesteps and model calls that is, and how long
it takes here (the whole command, start-up and model loading included).

    python benchmarks/default_steps.py --threads 2 [--model mnist-class] [--out out/bench-default-steps]

Prints a markdown table and the CPU. One command at a time; nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {  # name -> extra flags (none: every default is the library's)
    "sample": ["--n", "1"],  # one sample per class: 10 images
    "generate": [],
    "denoise": [],
    "sdedit": [],
    "inpaint": [],
    "anagram": [],
    "hybrid": [],
    "setup": [],
    "evaluate": ["--n", "100"],  # 100 samples per guidance scale instead of 1000
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mnist-class")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", default=None, help="a subset of the commands")
    args = p.parse_args()

    from fundiff import samplers
    from fundiff import timesteps as ts
    from fundiff.backends import runs
    from fundiff.devices import cpu_name

    den = runs.load_denoiser(args.model)
    T, sampler = den.schedule.T, samplers.default_sampler_of(den)
    n = len(ts.default(T))
    calls = 2 * n - 1 if sampler == "heun" else n
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in COMMANDS.items():
            if args.only and name not in args.only:
                continue
            out = Path(tmp) / name
            argv = [name, "--model", args.model, *extra, "--threads", str(args.threads)]
            argv += ["--out", str(out / "e.json" if name == "evaluate" else out / "s.png" if name == "sample" else out)]
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fundiff.cli", *argv], capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{shlex.join(argv)} failed: {done.stderr.strip()}")
            steps = "2 4 6 8 12 16 (its --num-steps)" if name == "setup" else f"{n} ({calls} model calls)"
            rows.append((f"`fundiff {shlex.join([name, *extra])}`", steps, f"{wall:.1f}"))
    print(f"{args.model}: T = {T}, default sampler {sampler}; {cpu_name()}, {args.threads} threads\n")
    print("| command | default timesteps (per descent) | seconds |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
