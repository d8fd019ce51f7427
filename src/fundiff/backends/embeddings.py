"""Text-prompt embeddings for DeepFloyd IF: from a given file, from the on-disk cache, or from T5.

IF conditions its UNet on T5-XXL's last hidden states, (L=77, D=4096) per prompt. T5 is the
largest part of IF (4.8B parameters), so :class:`PromptEmbeddings` looks a prompt up, in order,

1. in a user-given file of precomputed embeddings (``--embeddings``: the course hands them out
   as a ``.pth`` dict {prompt: tensor}; read with ``torch.load(weights_only=True)``, never
   plain pickle; a ``.safetensors`` file works too),
2. in the cache: one safetensors file per (text encoder, prompt) under
   ``$FUNDIFF_CACHE/embeddings`` (else ``$XDG_CACHE_HOME/fundiff``, else ``~/.cache/fundiff``),
   named by a SHA-256 of the text encoder's identity (its config and weight file sizes, see
   :func:`encoder_identity`), the prompt after IF's preprocessing and the token length,
3. and only then loads T5 (once for all missing prompts), encodes, writes the cache
   atomically and releases T5 again.

A later run whose prompts are all cached never loads T5 (``t5_loads`` counts the loads).
Prompts are preprocessed as IFPipeline does without ``clean_caption`` (which needs bs4 and
ftfy): lower-cased and stripped.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from fundiff.atomic import atomic_write_bytes
from fundiff.devices import precision_cache_path
from fundiff.errors import FundiffError

MAX_LENGTH = 77  # IFPipeline's T5 token length (padded / truncated to it)
EMBEDDINGS_FORMAT = "fundiff-t5-embedding/1"

# () -> (tokenizer, text encoder) ready on the right device and dtype
T5Loader = Callable[[], tuple[object, torch.nn.Module]]


def preprocess(prompt: str) -> str:
    """IFPipeline's prompt preprocessing with clean_caption=False: lower case, stripped."""
    return prompt.lower().strip()


def embeddings_cache_dir() -> Path:
    """Where cached embeddings live: the user cache of :func:`devices.precision_cache_path`, /embeddings."""
    return precision_cache_path().parent / "embeddings"


def encoder_identity(folder: Path) -> str:
    """A cheap fingerprint of the text encoder and tokenizer in an IF folder, without loading them.

    SHA-256 of text_encoder/config.json and the names and sizes of the files of text_encoder/
    and tokenizer/ (a retrained or different encoder changes the config or the file sizes).
    """
    h = hashlib.sha256()
    for sub in ("text_encoder", "tokenizer"):
        d = folder / sub
        if not d.is_dir():
            raise FundiffError(f"{folder} has no {sub}/ folder; an IF stage I folder needs one")
        for f in sorted(d.iterdir()):
            if f.is_file():
                h.update(f"{sub}/{f.name}:{f.stat().st_size}\n".encode())
    h.update((folder / "text_encoder" / "config.json").read_bytes())
    return h.hexdigest()


def cache_key(identity: str, prompt: str, max_length: int = MAX_LENGTH) -> str:
    """The cache file's name (without suffix) for one prompt of one encoder."""
    text = json.dumps({"encoder": identity, "prompt": preprocess(prompt), "max_length": max_length}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_embeddings_file(path: str | Path) -> dict[str, Tensor]:
    """A file of precomputed embeddings -> {prompt: (L, D) float tensor} on the CPU.

    ``.safetensors`` (tensor names are the prompts) or a torch file of a dict {prompt: tensor}
    with tensors (L, D) or (1, L, D), read with ``torch.load(weights_only=True)`` (no pickle code runs).
    """
    path = Path(path)
    if not path.is_file():
        raise FundiffError(f"embeddings file {str(path)!r} not found; give a .pth dict of prompt -> tensor")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for foreign or corrupt files
        raise FundiffError(
            f"cannot read {str(path)!r} as a dict of tensors ({type(e).__name__}); give a .pth saved with "
            "torch.save({prompt: tensor}) or a .safetensors file"
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in raw.items()):
        raise FundiffError(f"{str(path)!r} must hold a dict {{prompt: tensor}}; it holds a {type(raw).__name__}")
    out = {}
    for prompt, emb in raw.items():
        emb = emb[0] if emb.ndim == 3 and emb.shape[0] == 1 else emb
        if emb.ndim != 2:
            raise FundiffError(
                f"the embedding of {prompt!r} in {str(path)!r} has shape {tuple(emb.shape)}; "
                "expected (L, D) or (1, L, D)"
            )
        out[prompt] = emb.float()
    return out


class PromptEmbeddings:
    """Prompts -> T5 embeddings (B, L, D): from ``given``, the disk cache, or T5 (loaded only when needed).

    ``identity`` names the text encoder (:func:`encoder_identity`); ``load_t5`` loads it on demand
    and ``before_t5`` (optional) runs before that (e.g. to move the UNet off the GPU).
    ``cache`` False keeps nothing on disk.
    """

    def __init__(
        self,
        identity: str,
        load_t5: T5Loader,
        *,
        given: dict[str, Tensor] | None = None,
        cache: bool = True,
        before_t5: Callable[[], None] | None = None,
        max_length: int = MAX_LENGTH,
    ) -> None:
        self.identity = identity
        self.load_t5 = load_t5
        self.given = dict(given or {})
        self.given.update({preprocess(k): v for k, v in list(self.given.items())})
        self.cache = cache
        self.before_t5 = before_t5
        self.max_length = max_length
        self.t5_loads = 0  # how often T5 was loaded (0 when every prompt came from the file or the cache)
        self._memo: dict[str, Tensor] = {}  # this process's embeddings by preprocessed prompt

    def _cache_path(self, prompt: str) -> Path:
        return embeddings_cache_dir() / f"{cache_key(self.identity, prompt, self.max_length)}.safetensors"

    def _lookup(self, prompt: str) -> Tensor | None:
        key = preprocess(prompt)
        if key in self._memo:
            return self._memo[key]
        emb = self.given.get(prompt, self.given.get(key))
        if emb is None and self.cache:
            emb = _read_cached(self._cache_path(prompt))
        if emb is not None:
            self._memo[key] = emb
        return emb

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """(len(prompts), L, D) float32 on the CPU, in the order of ``prompts``.

        When T5 has to be loaded, the null prompt "" is encoded along (classifier-free guidance asks
        for it right after), so that one run loads T5 at most once.
        """
        missing = sorted({preprocess(p) for p in prompts if self._lookup(p) is None})
        if missing and self._lookup("") is None:
            missing = sorted({*missing, ""})
        if missing:
            for prompt, emb in zip(missing, self._encode(missing)):
                self._memo[prompt] = emb
                if self.cache:
                    _write_cached(self._cache_path(prompt), emb, prompt, self.identity)
        return torch.stack([self._memo[preprocess(p)] for p in prompts])

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> Tensor:
        """Load T5, encode ``prompts`` as IFPipeline.encode_prompt does, release T5. (N, L, D) float32, CPU."""
        if self.before_t5 is not None:
            self.before_t5()
        tokenizer, encoder = self.load_t5()
        self.t5_loads += 1
        try:
            device = next(encoder.parameters()).device
            tokens = tokenizer(
                prompts,
                padding="max_length",
                max_length=self.max_length,
                truncation=True,
                add_special_tokens=True,
                return_tensors="pt",
            )
            out = encoder(tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))[0]
            return out.float().cpu()
        finally:
            del encoder, tokenizer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _read_cached(path: Path) -> Tensor | None:
    """A cached embedding (L, D) float32, or None when absent or unreadable (then it is computed again)."""
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    try:
        return load_file(str(path))["embedding"].float()
    except Exception:  # a truncated or foreign file: recompute rather than fail
        return None


def _write_cached(path: Path, emb: Tensor, prompt: str, identity: str) -> None:
    from safetensors.torch import save

    data = save(
        {"embedding": emb.contiguous()}, metadata={"format": EMBEDDINGS_FORMAT, "prompt": prompt, "encoder": identity}
    )
    try:
        atomic_write_bytes(path, data)
    except OSError:  # a read-only cache: the embedding is just not remembered
        pass
