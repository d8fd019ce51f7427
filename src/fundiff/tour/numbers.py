"""The evaluation numbers a tour section shows, read from the model's card (never typed in here)."""

from __future__ import annotations

SEE_README = "see README"  # for numbers no file records


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _trained(card: dict) -> list[tuple[str, str]]:
    if not card:
        return [("evaluation", "none recorded for this run folder: run `fundiff evaluate --model RUN`")]
    rows = [("trained with", card.get("command") or "not recorded")]
    if card.get("wall_s") is not None:
        rows.append(("training wall time", f"{card['wall_s']:.0f} s ({card.get('steps')} steps)"))
    return rows


def class_numbers(card: dict) -> list[tuple[str, str]]:
    """Accuracy (by fundiff's classifier) and FID of a class model's card, at its CFG scale and at s = 1."""
    ev = card.get("evaluation") or {}
    if "eval_prompts" in ev:  # a text model (fundiff evaluate: prompt_eval)
        e, w = ev["eval_prompts"], ev.get("writeup_prompts", {})
        how = f"{e['samples_per_prompt']} samples each, CFG s={e['guidance']:g}, {ev.get('steps')} steps"
        rows = [
            (f"prompt fidelity over {e['prompts']} prompts ({how})", _pct(e["fidelity"])),
            ("prompt fidelity on the write-up's prompts", _pct(w.get("fidelity"))),
            ("diversity (distinct nearest emoji per sample)", f"{e['diversity']:.2f}"),
        ]
        if "fid" in ev:  # measured with an emoji classifier (prompt_eval.caption_fid)
            f = ev["fid"]
            rows += [
                (f"prompt fidelity in {ev.get('classifier')}'s features", _pct(e.get("fidelity_features"))),
                (f"FID of {f['n']} samples of training titles, in its features", f"{f['fid']:.2f} "
                 f"(floor {f['fid_floor']:.2f})"),
            ]  # fmt: skip
        return rows + _trained(card)
    if "accuracy" not in ev:
        return _trained(card)
    how = f"{ev.get('n')} samples, {ev.get('steps')} steps, graded by {ev.get('classifier')}"
    rows = [
        (f"class accuracy at CFG s={ev.get('guidance')} ({how})", _pct(ev["accuracy"].get("overall"))),
        (
            f"FID at CFG s={ev.get('guidance')}",
            f"{ev.get('fid', float('nan')):.2f} (floor {ev.get('fid_floor', float('nan')):.2f})",
        ),
    ]
    for entry in ev.get("sweep", []):
        if entry.get("guidance") == 1.0:
            rows.append(
                ("class accuracy / FID without guidance (s=1)", f"{_pct(entry['overall'])} / {entry['fid']:.2f}")
            )
    return rows + _trained(card)


def time_numbers(card: dict) -> list[tuple[str, str]]:
    """FID and the class histogram's extremes of a time model's card."""
    ev = card.get("evaluation") or {}
    if "fid" not in ev:
        return _trained(card)
    rows = [
        (
            f"FID ({ev.get('n')} samples, {ev.get('steps')} steps)",
            f"{ev['fid']:.2f} (floor {ev.get('fid_floor', float('nan')):.2f})",
        )
    ]
    fractions = ev.get("class_fractions") or {}
    if fractions:
        hi, lo = max(fractions, key=fractions.get), min(fractions, key=fractions.get)
        rows.append(
            (
                "classes read by the classifier",
                f"most {hi} ({_pct(fractions[hi])}), fewest {lo} ({_pct(fractions[lo])})",
            )
        )
    return rows + _trained(card)


def denoiser_numbers(card: dict) -> list[tuple[str, str]]:
    """The card's PSNR of the one-step denoiser vs the best Gaussian blur, per sigma."""
    ev = card.get("evaluation") or {}
    rows = [
        (
            f"PSNR at σ={r['sigma']:g} ({ev.get('n')} test images)",
            f"{r['psnr']:.2f} dB (best blur {r['blur_psnr']:.2f} dB)",
        )
        for r in ev.get("rows", [])
        if r.get("sigma", 0) > 0
    ]
    return rows + _trained(card)


def read_rates() -> tuple[str, str]:
    return (
        "how often the classifier reads each view as intended",
        f"{SEE_README} (benchmarks/anagram_hybrid_rates.py)",
    )
