"""Time spent in the kernel while sampling, with glibc's default malloc settings and with fundiff's.

    python benchmarks/allocator.py --threads 2 --steps 10

Each setting runs in a fresh child process (malloc settings are per process): it loads the
class model, warms up, then samples 100 class samples with CFG (a 200-image batch per step)
and reports wall, user and system seconds and minor page faults of the sampling alone
(``resource.getrusage``). "fundiff" is what the ``fundiff`` command does at start-up
(:func:`fundiff.memory.keep_freed_memory`); outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import cpu_description

CHILD = r"""
import hashlib, json, resource, sys, time
import torch
args = json.loads(sys.argv[1])
if args["keep"]:
    from fundiff.memory import keep_freed_memory
    assert keep_freed_memory()
torch.set_num_threads(args["threads"])
from fundiff import samplers, timesteps as ts
from fundiff.guidance import CFG
from fundiff.backends.runs import load_denoiser
den = load_denoiser(args["model"], precision=args["precision"])
model = CFG(den, 5.0)
cond = model.encode([p for p in den.default_prompts for _ in range(10)])
steps = ts.strided(den.schedule.T, steps=args["steps"])
def run():
    g = torch.Generator().manual_seed(0)
    return samplers.sample_from_noise(model, cond, steps, generator=g, sampler=args["sampler"])
run()
r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
x = run()
r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"wall": w1 - w0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                  "minflt": r1.ru_minflt - r0.ru_minflt, "sha": hashlib.sha256(x.numpy().tobytes()).hexdigest()[:12]}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-class", help="class-conditioned run folder or shipped name")
    ap.add_argument("--steps", type=int, default=10, help="sampling steps")
    ap.add_argument("--sampler", default="ddpm", help="sampler name")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="UNet autocast precision")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting (alternating); the table shows the fastest")
    args = ap.parse_args()
    print(cpu_description())
    print(
        f"model={args.model} steps={args.steps} sampler={args.sampler} precision={args.precision} "
        f"threads={args.threads}"
    )
    rows: dict[str, list[dict]] = {"glibc default": [], "fundiff (keep_freed_memory)": []}
    for _ in range(args.repeat):
        for name, keep in (("glibc default", False), ("fundiff (keep_freed_memory)", True)):
            spec = json.dumps({**vars(args), "keep": keep})
            out = subprocess.run([sys.executable, "-c", CHILD, spec], check=True, capture_output=True, text=True)
            rows[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| malloc settings | wall (s) | user (s) | sys (s) | sys share | minor faults | output |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in rows.items():
        r = min(runs, key=lambda r: r["wall"])
        share = r["sys"] / max(r["user"] + r["sys"], 1e-9)
        print(
            f"| {name} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {share:.0%} "
            f"| {r['minflt']:,} | {r['sha']} |"
        )


if __name__ == "__main__":
    main()
