"""Training recipes at an equal budget: train each variant with `fundiff train`, score it with `fundiff evaluate`.

    python benchmarks/ablate.py --kind time --epochs 2 --out runs/ablate \
        base: \
        cosine:--beta-schedule cosine \
        flow:--objective flow --T 1000 \
        "flow:--objective flow --T 1000 | --sampler euler" \
        "flow-heun25:=flow --steps 25 --sampler heun"

Each variant is NAME:TRAIN-FLAGS[ | EVAL-FLAGS] (train flags added to `fundiff train KIND --preset
PRESET --epochs E`, PRESET quick unless --preset says otherwise; evaluation flags to `fundiff evaluate`) or
NAME:=OTHER EVAL-FLAGS (evaluate the run of variant OTHER again, e.g. with another sampler).
Variants run one after another (never two at once: the wall times are part of the table),
are skipped when their results already exist, and the table (markdown) is printed and
written to OUT/ablation.md with the CPU model. Evaluation: `fundiff evaluate --n N --steps 50`
plus the variant's evaluation flags (time models: FID / floor and the class histogram's largest
distance from uniform; class models: FID at the evaluation guidance and accuracy).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import cpu_description


def _run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def _row(name: str, flags: str, ev: dict, wall: float | None) -> str:
    fid, floor = ev["fid"], ev["fid_floor"]
    cells = [name, f"`{flags}`" if flags else "(preset)", f"{fid:.2f}", f"{fid / floor:.2f}×"]
    fractions = ev.get("class_fractions")
    if fractions:
        cells.append(f"{100 * max(abs(v - 0.1) for v in fractions.values()):.1f} pp")
    else:
        accuracy = ev.get("accuracy", float("nan"))  # fundiff evaluate: {"overall": ..., "per_class": ...}
        cells.append(f"{100 * (accuracy['overall'] if isinstance(accuracy, dict) else accuracy):.1f}%")
    cells += [f"{ev.get('sampler', 'ddpm')} {ev.get('steps')}"]
    cells += [f"{wall / 60:.1f}" if wall else "–"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="NAME:TRAIN-FLAGS or NAME:=OTHER EVAL-FLAGS")
    ap.add_argument("--kind", default="time", choices=("time", "class"))
    ap.add_argument("--preset", default="quick", help="the preset each variant's flags are added to")
    ap.add_argument("--epochs", type=int, default=2, help="the equal budget: epochs of the preset")
    ap.add_argument("--n", type=int, default=500, help="samples per evaluation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of training")
    ap.add_argument("--eval-threads", type=int, default=1, help="torch threads of evaluation")
    ap.add_argument("--out", type=Path, default=Path("runs/ablate"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    header = "| variant | flags | FID | × floor | " + ("spread" if args.kind == "time" else "accuracy")
    rows = [header + " | sampler, steps | train min |", "|" + "---|" * 7]
    for spec in args.variants:
        name, _, flags = spec.partition(":")
        run, wall = args.out / name, None
        eval_flags = ["--steps", "50"]
        if flags.startswith("="):
            other, *rest = shlex.split(flags[1:])
            run, eval_flags = args.out / other, eval_flags + rest
        else:
            flags, _, more = flags.partition("|")
            flags, eval_flags = flags.strip(), eval_flags + shlex.split(more)
        if not flags.startswith("=") and not (run / "state.json").exists():
            cmd = ["fundiff", "train", args.kind, "--preset", args.preset, "--epochs", str(args.epochs)]
            cmd += ["--sample-epochs", str(args.epochs), "--no-progress", "--threads", str(args.threads)]
            wall = _run([*cmd, "--out", str(run), *shlex.split(flags)], args.out / f"{name}.train.log")
        if wall is None and (run / "state.json").exists():
            wall = json.loads((run / "state.json").read_text()).get("wall_s")
        ev_path = args.out / f"{name}.eval.json"
        if not ev_path.exists():
            cmd = ["fundiff", "evaluate", "--model", str(run), "--n", str(args.n), "--threads", str(args.eval_threads)]
            _run([*cmd, "--out", str(ev_path), *eval_flags], args.out / f"{name}.eval.log")
        rows.append(_row(name, flags, json.loads(ev_path.read_text()), wall))
        print(rows[-1], flush=True)
    title = f"{args.kind} model, {args.preset} preset, {args.epochs} epochs; {cpu_description()}"
    table = "\n".join([title, "", *rows])
    (args.out / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
