"""Step progress of a training loop: a tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time


class Progress:
    """Step progress of a training loop: a tqdm bar on a terminal; in a log file (stderr not a
    terminal) one plain line every ``interval`` seconds and at every ``line()`` instead of redraws."""

    def __init__(self, total: int, *, desc: str, initial: int = 0, enabled: bool = True, interval: float = 30.0):
        self.total, self.desc, self.step, self.interval = total, desc, initial, interval
        self.enabled, self.info, self.bar = enabled, {}, None
        self.tty = enabled and sys.stderr.isatty()
        self.t_last = time.perf_counter()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)

    def update(self, **info) -> None:
        """One step done; ``info`` (e.g. epoch=, loss=) is shown beside the count."""
        self.step += 1
        self.info = info
        if self.bar is not None:
            self.bar.set_postfix(**info, refresh=False)
            self.bar.update(1)
        elif self.enabled and time.perf_counter() - self.t_last >= self.interval:
            self.line()

    def line(self, message: str = "") -> None:
        """Print ``message`` on its own line; without one, the current step and info (log mode only)."""
        if not self.enabled or (not message and self.bar is not None):
            return
        if not message:
            info = ", ".join(f"{k} {v}" for k, v in self.info.items())
            message = f"{self.desc}: step {self.step}/{self.total}" + (f", {info}" if info else "")
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)
        self.t_last = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["Progress"]
