"""Foreign models as fundiff Denoisers. Each adapter imports its heavy dependencies inside itself only.

- :mod:`fundiff.adapters.deepfloyd`: DeepFloyd IF stage I (diffusers) and optional stage II upscaling.
- :mod:`fundiff.adapters.embeddings`: T5 prompt embeddings, cached on disk, or read from a given file.
"""
