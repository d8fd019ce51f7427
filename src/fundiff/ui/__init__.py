"""``fundiff ui``: a local web app (gradio 6) to play the write-up's techniques by hand.

Tabs: sampling (CFG, sampler, steps), SDEdit of a drawing or an upload, inpainting with a mask
painted over a test image or an upload (replace or RePaint), visual anagrams and hybrid images.
Each tab is a technique spec of :mod:`fundiff.specs`: its controls, their start values (the technique's
defaults for the model) and labels come from the spec, and every run of a tab

- writes its inputs into a folder of its own under ``out`` (the drawing or upload as
  ``input.*``, the painted mask as ``mask.png``) and reads them back with :mod:`fundiff.images`
  exactly as the CLI reads ``--image`` / ``--mask``;
- calls the spec's figure function of :mod:`fundiff.techniques`, as the matching CLI command does
  (no second implementation of any technique), with its ``on_step`` hook streaming x0_hat to
  the page while the sampler runs (in a worker thread; the page polls a queue);
- leaves there the figure, its single images, ``manifest.json`` in the tour's format (one
  section; :mod:`fundiff.provenance`) and ``index.html``, offered as one zip.

The manifest's command (``fundiff sdedit --image OUT/RUN/input.png ...``, built from the spec) reproduces the
figure. All sampling events share one queue slot (concurrency 1), so two users never run two samplers at
once. Bad input shows its FundiffError text in the page, never a traceback. gradio is imported
only in this package; analytics are off and the server binds to 127.0.0.1 unless told otherwise.

Modules: ``app`` (config, models, run folders, the streaming worker, manifests), ``controls`` (controls from
specs, shared widgets), ``tabs`` (the page), ``inputs`` (drawings, uploads, masks), ``pictures``, ``serve``.
"""

from fundiff.ui.app import UIConfig, diffusion_models
from fundiff.ui.controls import SAMPLING_SLOT
from fundiff.ui.serve import launch
from fundiff.ui.tabs import build

__all__ = ["SAMPLING_SLOT", "UIConfig", "build", "diffusion_models", "launch"]
