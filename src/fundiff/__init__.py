"""fundiff: fun with diffusion models -- train small diffusion models and play every classic technique."""

from fundiff.errors import FundiffError

__all__ = ["FundiffError"]
__version__ = "0.1.0"
DEFAULT_SEED = 20040805  # the write-up's seed
DEFAULT_GUIDANCE = 5.0  # the write-up's CFG scale (gamma = 5 in eps_u + gamma (eps_c - eps_u)); every default uses it
