"""Views for visual anagrams (Geng et al. 2024) and the Gaussian frequency bands of hybrids (low/high-pass, subbands).

A :class:`View` is an invertible linear map of *centred* images, ``V(x) = sign * P(x)``,
where ``P`` permutes pixels (a flip, a rotation) and ``sign`` is +1 or -1 (negation). As in
visual_anagrams, ``view`` is applied to the noisy image and ``inverse_view`` to the noise
estimate. Views are pure: they return new tensors and never change their input.

Why "centred": visual_anagrams works in DeepFloyd's [-1, 1] space, where negation is
``x -> -x``. fundiff's UNets see clean images x_0 in [0, 1], centre c = 1/2. The negative of
an image there is ``lo + hi - x_0`` = ``2c - x_0``, and its noisy version with negated noise is

    sqrt(abar_t) (2c - x_0) + sqrt(1 - abar_t) (-eps) = 2 c sqrt(abar_t) - x_t,

so the view of x_t must depend on t. In general a view acts on x_t by
``V(x_t - s) + s`` with ``s = c sqrt(abar_t)`` (:meth:`View.view_x_t`), which equals the
noisy version of the viewed clean image ``V(x_0 - c) + c`` with viewed noise ``V(eps)``:
exactly what the denoiser was trained on. For pixel permutations ``P(s) = s`` (s is a
constant image), so ``view_x_t`` is just ``P(x_t)``; for c = 0 (DeepFloyd) it is just
``V(x_t)``. The noise estimate has no offset, so ``inverse_view`` needs no t. Learned
variance channels are a per-pixel magnitude, so they are only un-permuted, never negated
(:meth:`View.inverse_view_variance`, as visual_anagrams' NegateView does).

Views are looked up by a *spec* with :func:`get_view`: a registered name ("vflip") or a
parametric family's name and arguments ("rot90:1", "translate:3,-2"). Register a new view
with :func:`register_view`, or a family with :func:`register_view_family`; it is then
accepted everywhere a view is (composers, the CLI's --view, checked when the command runs)::

    from fundiff.views import View, register_view
    register_view(View("transpose", _transpose, _transpose, description="swap rows and columns (square images)"))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fundiff.errors import FundiffError

PixelMap = Callable[[Tensor], Tensor]  # (..., H, W) -> (..., H, W), returns a new tensor


@dataclass(frozen=True)
class View:
    """An invertible view ``V(x) = sign * permute(x)`` of centred images (..., H, W)."""

    name: str  # the name it is looked up by
    permute: PixelMap  # P: a pixel permutation (flip, rotation); must not modify its input
    unpermute: PixelMap  # P^-1
    sign: float = 1.0  # +1, or -1 for negation
    description: str = ""  # one line, shown in the CLI's help

    def __post_init__(self) -> None:
        if self.sign not in (1.0, -1.0):
            raise FundiffError(f"view {self.name!r}: sign must be +1 or -1, got {self.sign}")

    def view(self, x: Tensor) -> Tensor:
        """V(x) for a centred image or a noise tensor x (..., H, W)."""
        return self.permute(x) if self.sign == 1 else -self.permute(x)

    def inverse_view(self, x: Tensor) -> Tensor:
        """V^-1(x): applied to a noise estimate eps (..., H, W) predicted on the viewed image."""
        return self.unpermute(x) if self.sign == 1 else -self.unpermute(x)

    def inverse_view_variance(self, v: Tensor) -> Tensor:
        """P^-1(v) for learned-variance channels v (..., H, W) in [-1, 1]: un-permuted, never negated."""
        return self.unpermute(v)

    def view_x_t(self, x_t: Tensor, alpha_t: Tensor, value_range: tuple[float, float]) -> Tensor:
        """The view of a noisy image: V(x_t - s) + s with s = c alpha_t, c the centre of ``value_range``.

        x_t (B,C,H,W); alpha_t = sqrt(abar_t) broadcastable to x_t (float, e.g. (B,1,1,1) from
        ``schedule.at(t, like=x_t).alpha``; 1 for a clean image).
        Derivation in the module docstring; P fixes the constant image s, so only negation moves it.
        """
        if self.sign == 1:
            return self.permute(x_t)
        centre = (value_range[0] + value_range[1]) / 2
        return self.view(x_t) + 2 * centre * alpha_t

    def view_image(self, x_0: Tensor, value_range: tuple[float, float]) -> Tensor:
        """The view of a clean image x_0 (B,C,H,W) in ``value_range`` (e.g. to show an anagram flipped)."""
        return self.view_x_t(x_0, x_0.new_ones(()), value_range)

    def inverse_view_image(self, x_0: Tensor, value_range: tuple[float, float]) -> Tensor:
        """The inverse of :meth:`view_image`: a clean estimate made on the viewed image, seen as is again."""
        if self.sign == 1:
            return self.unpermute(x_0)
        return self.inverse_view(x_0) + (value_range[0] + value_range[1])


def _same(x: Tensor) -> Tensor:
    return x


def _vflip(x: Tensor) -> Tensor:
    return x.flip(-2)


def _hflip(x: Tensor) -> Tensor:
    return x.flip(-1)


def _rot180(x: Tensor) -> Tensor:
    return x.flip(-2, -1)


_REGISTRY: dict[str, View] = {}  # the one view registry; changed only by register_view
_FAMILIES: dict[str, ViewFamily] = {}  # parametric views, by family name; changed only by register_view_family


def register_view(view: View, *, replace: bool = False) -> View:
    """Make ``view`` available by its name; a taken name is an error unless ``replace``."""
    if (view.name in _REGISTRY or view.name in _FAMILIES) and not replace:
        raise FundiffError(f"a view named {view.name!r} is already registered; pick another name or pass replace=True")
    _REGISTRY[view.name] = view
    return view


for _v in (
    View("identity", _same, _same, description="the image as it is"),
    View("vflip", _vflip, _vflip, description="upside down: reverse the rows (the write-up's flip, convention 5)"),
    View("hflip", _hflip, _hflip, description="mirror: reverse the columns"),
    View("rot180", _rot180, _rot180, description="rotate by 180 degrees (a 6 becomes a 9)"),
    View(
        "negate",
        _same,
        _same,
        sign=-1.0,
        description="negative image: x0 -> lo + hi - x0 (white on black <-> black on white)",
    ),
):
    register_view(_v)


@dataclass(frozen=True)
class ViewFamily:
    """Views that take arguments: the spec ``"name:args"`` gives ``make(args)``, a View named by the spec."""

    name: str  # the part of the spec before ":"
    make: Callable[[str], View]  # the text after ":" -> View; raises FundiffError for bad arguments
    syntax: str  # e.g. "rot90:K", shown in errors and help
    description: str = ""  # one line, shown in the CLI's help


def register_view_family(family: ViewFamily, *, replace: bool = False) -> ViewFamily:
    """Make the views ``family.name:ARGS`` available; a taken name is an error unless ``replace``."""
    if (family.name in _FAMILIES or family.name in _REGISTRY) and not replace:
        raise FundiffError(
            f"a view named {family.name!r} is already registered; pick another name or pass replace=True"
        )
    _FAMILIES[family.name] = family
    return family


def _int_args(spec: str, text: str, count: int, what: str) -> list[int]:
    """``count`` comma-separated integers from ``text`` (the arguments of view ``spec``)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise FundiffError(f"view {spec!r}: expected {what}, got {text!r}")
    return values


def _rotate(x: Tensor, k: int) -> Tensor:
    """x (..., H, W) turned by k quarter turns counterclockwise; odd k needs H == W (the shape must not change)."""
    if k % 2 and x.shape[-1] != x.shape[-2]:
        raise FundiffError(f"view rot90:{k % 4} needs square images, got {x.shape[-2]}x{x.shape[-1]}")
    return torch.rot90(x, k, dims=(-2, -1))


def _rot90_view(text: str) -> View:
    """rot90:K, K quarter turns counterclockwise (torch.rot90 on the last two dims; square images)."""
    (k,) = _int_args(f"rot90:{text}", text, 1, "an integer number of quarter turns K, e.g. rot90:1")
    k %= 4
    turn, back = functools.partial(_rotate, k=k), functools.partial(_rotate, k=-k)
    return View(f"rot90:{k}", turn, back, description=f"rotate by {90 * k} degrees counterclockwise")


def _translate_view(text: str) -> View:
    """translate:DX,DY, a circular shift by DX columns right and DY rows down (torch.roll; wraps around)."""
    dx, dy = _int_args(
        f"translate:{text}", text, 2, "two integers DX,DY (columns right, rows down), e.g. translate:3,-2"
    )
    shift = functools.partial(torch.roll, shifts=(dy, dx), dims=(-2, -1))
    back = functools.partial(torch.roll, shifts=(-dy, -dx), dims=(-2, -1))
    return View(f"translate:{dx},{dy}", shift, back, description=f"shift {dx} columns right, {dy} rows down, wrapping")


register_view_family(
    ViewFamily("rot90", _rot90_view, "rot90:K", "rotate by K quarter turns counterclockwise (square images)")
)
register_view_family(
    ViewFamily("translate", _translate_view, "translate:DX,DY", "circular shift by DX columns right, DY rows down")
)


# -- the Visual Anagrams paper's permutation views (Geng et al. 2024, Sec. 3.2 and Fig. 5) ----------------
# Each is a fixed permutation of the H x W pixel positions, given as the source index of every output pixel:
# a permutation keeps i.i.d. N(0, I) noise i.i.d. N(0, I), the paper's condition for a valid view.
IndexMap = Callable[[int, int], Tensor]  # (H, W) -> (H*W,) long: output pixel k takes input pixel map[k]


@functools.lru_cache(maxsize=64)
def _index(make: IndexMap, H: int, W: int) -> tuple[Tensor, Tensor]:
    """(map, inverse map) of ``make`` for H x W images, checked to be a permutation (cached per size)."""
    index = make(H, W).to(torch.long).flatten()
    if index.numel() != H * W or not torch.equal(index.sort().values, torch.arange(H * W)):
        raise FundiffError(f"a view's index map for {H}x{W} images is not a permutation of its pixels")
    return index, index.argsort()


def _gather(x: Tensor, make: IndexMap, inverse: bool) -> Tensor:
    H, W = x.shape[-2:]
    index = _index(make, H, W)[1 if inverse else 0].to(x.device)
    return x.flatten(-2)[..., index].reshape(x.shape)


def permutation_view(name: str, make: IndexMap, description: str = "") -> View:
    """A View that moves pixel ``make(H, W)[k]`` to position k (and back): any fixed pixel permutation."""
    return View(
        name,
        functools.partial(_gather, make=make, inverse=False),
        functools.partial(_gather, make=make, inverse=True),
        description=description,
    )


def _pixel_index(H: int, W: int) -> Tensor:
    """A fixed random permutation of the pixels (its own generator, seeded with the image size)."""
    return torch.randperm(H * W, generator=torch.Generator().manual_seed(H * 100_003 + W))


def _skew_index(H: int, W: int) -> Tensor:
    """Column j shifted down by j // 2 rows, wrapping around: a skew that keeps every pixel."""
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return ((rows - cols // 2) % H) * W + cols


def _inner_circle_index(H: int, W: int) -> Tensor:
    """The inner disc (radius H/4 about the centre) turned by a quarter turn; the rest stays."""
    if H != W:
        raise FundiffError(f"view inner-circle needs square images, got {H}x{W}")
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    c = (H - 1) / 2
    inside = (rows - c) ** 2 + (cols - c) ** 2 < (H / 4) ** 2
    # output (i, j) in the disc takes the input at the pixel a quarter turn back: (j, H-1-i) -> (i, j); exact on the
    # grid, and the disc maps onto itself (distances to the centre are kept)
    src = torch.where(inside, cols * W + (H - 1 - rows), rows * W + cols)
    return src


def _patch_index(n: int) -> IndexMap:
    def make(H: int, W: int) -> Tensor:
        if H % n or W % n:
            raise FundiffError(f"view patch:{n} needs images whose sides divide by {n}, got {H}x{W}")
        ph, pw = H // n, W // n
        order = torch.randperm(n * n, generator=torch.Generator().manual_seed(n))  # which piece goes where
        rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        piece = order[(rows // ph) * n + cols // pw]  # output pixel's piece comes from input piece `piece`
        return ((piece // n) * ph + rows % ph) * W + (piece % n) * pw + cols % pw

    return make


@functools.lru_cache(maxsize=16)
def _patch_view(text: str) -> View:
    """patch:N, an N x N jigsaw: the image cut into N x N pieces, shuffled by a fixed permutation."""
    (n,) = _int_args(f"patch:{text}", text, 1, "a whole number of pieces per side N >= 2, e.g. patch:4")
    if n < 2:
        raise FundiffError(f"view 'patch:{text}': expected a whole number of pieces per side N >= 2")
    return permutation_view(f"patch:{n}", _patch_index(n), f"an {n}x{n} jigsaw: the pieces shuffled")


for _v in (
    permutation_view("skew", _skew_index, "skew: column j shifted down by j // 2 rows, wrapping (a permutation)"),
    permutation_view("pixel", _pixel_index, "a fixed random permutation of all pixels"),
    permutation_view("inner-circle", _inner_circle_index, "the inner disc turned by 90 degrees (square images)"),
):
    register_view(_v)
register_view_family(ViewFamily("patch", _patch_view, "patch:N", "an N x N jigsaw of shuffled pieces"))


def view_names() -> list[str]:
    """Names of all registered views (without the parametric families; see :func:`view_specs`)."""
    return list(_REGISTRY)


def view_specs() -> list[str]:
    """Every accepted form: the registered names, then each family's syntax ("rot90:K")."""
    return list(_REGISTRY) + [f.syntax for f in _FAMILIES.values()]


def describe_views() -> str:
    """'name: description' for every registered view and family, joined by '; ' (for help texts)."""
    return "; ".join(
        [f"{v.name}: {v.description}" for v in _REGISTRY.values()]
        + [f"{f.syntax}: {f.description}" for f in _FAMILIES.values()]
    )


def get_view(view: str | View) -> View:
    """The view a spec names: a registered name, or "family:args" of a parametric family (a View is returned as is)."""
    if isinstance(view, View):
        return view
    if view in _REGISTRY:
        return _REGISTRY[view]
    name, colon, args = view.partition(":")
    if colon and name in _FAMILIES:
        return _FAMILIES[name].make(args.strip())
    raise FundiffError(f"unknown view {view!r}; choose one of {', '.join(view_specs())}")


def _gaussian_blur(x: Tensor, k: int, sigma: float) -> Tensor:
    """torchvision's gaussian_blur, op for op (bit-identical; tested), without importing torchvision (~2.4 s).

    g(u) = exp(-u^2 / 2 sigma^2) / sum, u = -(k-1)/2 .. (k-1)/2; kernel g g^T; reflect padding k // 2.
    """
    dtype = x.dtype if torch.is_floating_point(x) else torch.float32
    u = torch.linspace(-(k - 1) * 0.5, (k - 1) * 0.5, steps=k, dtype=dtype, device=x.device)
    pdf = torch.exp(-0.5 * (u / sigma).pow(2))
    g = pdf / pdf.sum()
    kernel = torch.mm(g[:, None], g[None, :]).expand(x.shape[-3], 1, k, k)
    shape = x.shape
    y = x.to(dtype)
    y = y.unsqueeze(0) if y.ndim < 4 else y.reshape(-1, *shape[-3:])
    y = torch.nn.functional.pad(y, [k // 2] * 4, mode="reflect")
    y = torch.nn.functional.conv2d(y, kernel, groups=y.shape[-3])
    return y.reshape(shape).to(x.dtype)


@dataclass(frozen=True)
class GaussianFilter:
    """Gaussian low-pass (reflect padding, the same kernel and ops as torchvision's gaussian_blur) and its
    complement high-pass.

    ``lowpass(x) + highpass(x) == x`` by construction: highpass is ``x - lowpass(x)``. Used by
    hybrid images (Geng et al. 2024, factorized diffusion) and the write-up's classical denoising.
    """

    kernel_size: int = 5  # odd, >= 1; 1 leaves the image unchanged
    sigma: float = 1.0  # standard deviation in pixels, > 0

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise FundiffError(f"kernel size must be an odd integer >= 1, got {self.kernel_size}")
        if not self.sigma > 0:
            raise FundiffError(f"sigma must be > 0, got {self.sigma}")

    def lowpass(self, x: Tensor) -> Tensor:
        """Blur x (..., H, W) float; same shape and dtype."""
        if self.kernel_size // 2 >= min(x.shape[-2:]):
            raise FundiffError(
                f"kernel size {self.kernel_size} is too large for {x.shape[-2]}x{x.shape[-1]} images; "
                f"use at most {2 * min(x.shape[-2:]) - 1}"
            )
        return _gaussian_blur(x, self.kernel_size, self.sigma)

    def highpass(self, x: Tensor) -> Tensor:
        """x - lowpass(x): the detail the blur removes; same shape and dtype."""
        return x - self.lowpass(x)


@dataclass(frozen=True)
class FrequencyBands:
    """Spatial frequency bands that sum to the whole: the decomposition of Geng et al. 2024's hybrids (factorized
    diffusion), two bands for the write-up's hybrids and three subbands for their three-prompt ones.

    ``filters`` G_1, ..., G_{k-1}, blurring less and less (sigma strictly decreasing), split an image into k
    bands, from the coarsest::

        f_1 = G_1,   f_i = G_i - G_{i-1} (1 < i < k),   f_k = I - G_{k-1}

    so sum_i f_i = I (the sum telescopes; equal to x up to float rounding). No filter: one band, I. Two bands
    are :class:`GaussianFilter`'s lowpass and highpass, computed the same way (same values, bit for bit).
    A band keeps x's shape (..., H, W) and dtype.
    """

    filters: tuple[GaussianFilter, ...] = ()

    def __post_init__(self) -> None:
        sigmas = [f.sigma for f in self.filters]
        if any(finer >= coarser for coarser, finer in zip(sigmas, sigmas[1:])):
            raise FundiffError(
                f"frequency bands need filters that blur less and less (sigma decreasing), got sigmas {sigmas}"
            )

    def __len__(self) -> int:
        return len(self.filters) + 1

    def band(self, i: int, x: Tensor) -> Tensor:
        """f_i(x), i = 0 (lowest frequencies) .. len - 1 (highest)."""
        if not 0 <= i < len(self):
            raise FundiffError(f"band {i} of {len(self)}: give 0..{len(self) - 1}")
        if len(self) == 1:
            return x
        if i == 0:
            return self.filters[0].lowpass(x)
        if i == len(self) - 1:
            return self.filters[-1].highpass(x)
        return self.filters[i].lowpass(x) - self.filters[i - 1].lowpass(x)

    def split(self, x: Tensor) -> list[Tensor]:
        """[f_1(x), ..., f_k(x)], which sum to x."""
        return [self.band(i, x) for i in range(len(self))]
