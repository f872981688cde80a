"""Progress of a long phase (tiny-base SFT, RL steps, evaluation): done/total, rate and ETA.

A tqdm bar where stdout is a terminal; plain lines otherwise (a Ray job log, a worker's log, a pipe),
at most one every `every_s` seconds plus the last, so a fast loop does not flood the log:

    [sft] 300/1500 steps (20%) | 9.8 steps/s | elapsed 31s | ETA 2m02s | loss 1.234

The rate and ETA count only what was done since this `Progress` started (a resumed run starts at `done`).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


def duration(seconds: float) -> str:
    """Seconds as a short human duration.

    >>> duration(7.4), duration(125), duration(3725), duration(float("inf"))
    ('7s', '2m05s', '1h02m', '?')
    """
    if seconds != seconds or seconds == float("inf"):  # NaN or inf: nothing measured yet
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(what: str, done: int, total: int, unit: str, rate: float, elapsed_s: float, note: str = "") -> str:
    """One plain progress line; `rate` is units per second (0: unknown yet).

    >>> progress_line("eval gsm8k", 50, 200, "sample", 2.5, 20.0, "1,234 tokens/s")
    '[eval gsm8k] 50/200 samples (25%) | 2.5 samples/s | elapsed 20s | ETA 1m00s | 1,234 tokens/s'
    >>> progress_line("rl", 3, 10, "step", 1 / 40, 80.0)
    '[rl] 3/10 steps (30%) | 40.0 s/step | elapsed 1m20s | ETA 4m40s'
    """
    speed = "? " + unit + "s/s" if rate <= 0 else (
        f"{rate:.3g} {unit}s/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit}")
    eta = (total - done) / rate if rate > 0 else float("inf")
    percent = f"{100 * done / total:.0f}%" if total else "-"
    return (f"[{what}] {done}/{total} {unit}s ({percent}) | {speed} | elapsed {duration(elapsed_s)} | "
            f"ETA {duration(eta)}" + (f" | {note}" if note else ""))


class Progress:
    """`update(n, note)` after each unit of work; `close()` at the end (or use it as a context manager)."""

    def __init__(self, total: int, what: str, *, unit: str = "step", done: int = 0, every_s: float = 10.0,
                 stream: IO[str] | None = None, terminal: bool | None = None, started_s_ago: float = 0.0):
        """`started_s_ago`: when the work of `done` began, for a Progress made after the first unit finished."""
        self.total, self.what, self.unit, self.done, self.every_s = total, what, unit, done, every_s
        self.stream = stream or sys.stdout
        self._start_done, self._start = done, time.perf_counter() - started_s_ago
        self._last_line = float("-inf")
        self._note = ""
        is_terminal = terminal if terminal is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        if is_terminal:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, desc=what, unit=unit, file=self.stream, dynamic_ncols=True)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        return progress_line(self.what, self.done, self.total, self.unit, self.rate(),
                             time.perf_counter() - self._start, self._note)

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self._note = note or self._note
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every_s or self.done >= self.total:
            self._last_line = now
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
