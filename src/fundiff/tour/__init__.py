"""``fundiff tour``: every section of the write-up in order, as one self-contained HTML report.

Part A plays each technique (a spec of :mod:`fundiff.specs`, run as ``fundiff <technique>`` runs it) on a
class-conditioned model (the shipped ``mnist-class`` or ``fashion-class`` by default); Part B shows the noising
process z = x + sigma eps, the one-step denoiser and its out-of-distribution sigma sweep
(:func:`fundiff.evaluation.denoise_sweep`), and the time- and class-conditioned models -- from the shipped
models' model cards, or from runs that ``train=PRESET`` trains first.

Every section writes its files into ``OUT/sections/ID/`` and, when done, an entry
``OUT/sections/ID/section.json`` (atomically) with the command that reproduces it, its seed,
wall time, the evaluation numbers of its model (read from the model card, never typed in
here) and the SHA-256 of every file. A rerun skips the sections whose entry matches the
run's settings and whose files still have those hashes, so an interrupted tour resumes.
After each section ``OUT/manifest.json`` and ``OUT/index.html`` are rewritten from the entries.

Modules: ``state`` (sizes, per-dataset choices, the loaded models), ``part_a`` / ``part_b`` (the sections),
``sections`` (their order and captions), ``runner`` (running, resuming, the manifest), ``retrain``
(``--train PRESET``), ``numbers`` (model-card numbers), ``report`` (the HTML page).
"""

from fundiff.tour.runner import TourResult, run_tour
from fundiff.tour.sections import SECTION_IDS, SECTIONS
from fundiff.tour.state import CHOICES, FULL, QUICK, Sizes

__all__ = ["CHOICES", "FULL", "QUICK", "SECTIONS", "SECTION_IDS", "Sizes", "TourResult", "run_tour"]
