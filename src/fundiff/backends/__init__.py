"""Model resolution and foreign models as fundiff Denoisers (the layer between the applications and the core).

- :mod:`fundiff.backends.runs`: shipped names and folders -> a Denoiser, by backend (fundiff run folders,
  diffusers pipeline folders).
- :mod:`fundiff.backends.deepfloyd`: DeepFloyd IF stage I (diffusers); :mod:`fundiff.backends.deepfloyd_stage2`:
  the optional stage II upscaling.
- :mod:`fundiff.backends.embeddings`: T5 prompt embeddings, cached on disk, or read from a given file.

Each backend imports its heavy dependencies (diffusers, transformers) inside itself only, and only the core:
never the application shells (cli, tour, ui).
"""
