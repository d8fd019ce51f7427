"""A distilled student against its teacher: steps x seconds x class accuracy x FID x background grain.

    python benchmarks/few_steps.py --threads 2 --student mnist-class-fast --steps 1,2,4
    python benchmarks/few_steps.py --threads 2 --student runs/mnist-time-fast --steps 1,2,4   # a time model's

Rows: the teacher at its default sampler and steps, at the pairs' sampler (DPM++ 10), and with Euler at the
student's step counts; then the student at each count (its own timesteps: timesteps.for_model) and at any
--timesteps given. Every row of a class student
samples at the student's built-in CFG scale (the teacher with the CFG pair: two calls per step in one batch);
a time student and its teacher sample unconditionally (no accuracy).
Seconds: 100 samples (10 per class), timed after a warm-up, sampling only. Accuracy and FID (fundiff's
classifier features; the floor is 500 training images against the test set) and grain
(metrics.background_grain: the share of background pixels, away from the strokes, brighter than 0.05; MNIST's
own is 0%) on --n-eval samples.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import class_grading, cpu_description
from fundiff import DEFAULT_SEED, samplers
from fundiff import timesteps as ts
from fundiff.backends.runs import load_denoiser, resolve
from fundiff.checkpoints import load_config
from fundiff.classify import load_classifier
from fundiff.evaluation import draw_samples
from fundiff.guidance import CFG
from fundiff.memory import keep_freed_memory
from fundiff.metrics import background_grain, class_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="mnist-class-fast", help="a distilled run folder or shipped name")
    ap.add_argument("--classifier", default="mnist-classifier", help="classifier run folder or shipped name")
    ap.add_argument("--steps", default="1,2,4", help="comma-separated step counts")
    ap.add_argument("--n-eval", type=int, default=500, help="samples for accuracy, FID and grain (a multiple of 10)")
    ap.add_argument("--no-teacher-default", action="store_true", help="skip the teacher's (slow) default row")
    ap.add_argument("--no-teacher", action="store_true", help="the student's rows only")
    ap.add_argument("--timesteps", default="", help="more student rows at given timesteps: '999,599;999,399'")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", help="the models' arithmetic, as every command's --precision")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    student = load_denoiser(args.student, precision=args.precision)
    distill = load_config(resolve(args.student))["distill"]
    teacher = load_denoiser(distill["teacher"], precision=args.precision)
    conditional = student.kind == "class"
    guidance = student.traits.guidance if conditional else 1.0
    clf, _ = load_classifier(args.classifier)
    dataset = load_config(resolve(args.student))["train"]["dataset"]
    names = student.default_prompts if conditional else ("",) * 10  # a time model: the null prompt only
    fid, prompts100, prompts_eval, target, floor = class_grading(clf, dataset, names, args.n_eval, args.seed)
    print(cpu_description())
    print(f"student={args.student} teacher={distill['teacher']} CFG s={guidance:g} threads={torch.get_num_threads()}")
    arithmetic = f"{student.traits.autocast_dtype or 'fp32'}{' channels-last' if student.traits.channels_last else ''}"
    print(f"precision {args.precision}: {arithmetic}; torch={torch.__version__}")
    print(f"FID floor ({len(prompts_eval)} train images) {floor:.2f}")

    def measure(model, timesteps, sampler) -> tuple[float, float, float, float]:
        draw_samples(model, prompts100[:10], timesteps[:1], generator=torch.Generator(), sampler=sampler)  # warm-up
        t0 = time.perf_counter()
        draw_samples(model, prompts100, timesteps, generator=torch.Generator().manual_seed(args.seed), sampler=sampler)
        wall = time.perf_counter() - t0
        x = draw_samples(model, prompts_eval, timesteps, generator=torch.Generator().manual_seed(args.seed + 2),
                         sampler=sampler)  # fmt: skip
        accuracy = class_accuracy(clf, x, target, num_classes=len(names)).overall if conditional else float("nan")
        return wall, accuracy, fid(x), background_grain(x)

    guided = CFG(teacher, guidance) if conditional else teacher
    rows = []
    if not (args.no_teacher_default or args.no_teacher):
        rows.append(("teacher (its default)", guided, ts.for_model(teacher), samplers.default_sampler_of(teacher)))
    counts = [int(s) for s in args.steps.split(",")]
    if not args.no_teacher:
        teacher_steps = ts.resolve(teacher.schedule.T, steps=distill["teacher_steps"])
        rows.append(("teacher (the pairs' sampler)", guided, teacher_steps, distill["teacher_sampler"]))
        rows += [("teacher", guided, ts.trailing(teacher.schedule.T, k), "euler") for k in counts]
    rows += [("student", student, ts.for_model(student, steps=k), "euler") for k in counts]
    for given in filter(None, args.timesteps.split(";")):
        timesteps = ts.validate([int(t) for t in given.split(",")], student.schedule.T)
        rows.append((f"student at t = {given}", student, timesteps, "euler"))
    print("| model | sampler | steps | calls / sample | 100 samples (s) | accuracy | FID | FID / floor | grain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, model, timesteps, sampler in rows:
        calls = len(timesteps) * (2 if sampler == "heun" else 1) - (1 if sampler == "heun" else 0)
        calls *= 1 if model is student or not conditional else 2
        wall, acc, f, gr = measure(model, timesteps, sampler)
        acc_text = f"{acc:.1%}" if conditional else "-"
        print(f"| {label} | {sampler} | {len(timesteps)} | {calls} | {wall:.2f} | {acc_text} | {f:.2f} | "
              f"{f / floor:.2f} | {gr:.1%} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
