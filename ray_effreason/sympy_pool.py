"""Bounded math-verify (sympy) comparisons in persistent worker processes, safe from any thread.

`verifiers.check_math` settles most answers without sympy; what is left comes here, already
extracted, cleaned and pre-checked (`verifiers.too_complex`).

Time limits. math-verify's own timeouts use `signal.alarm`, which raises outside the main thread,
and Ray actors run methods in threads. So math-verify runs with its timeouts disabled
(`parsing_timeout=None`, `timeout_seconds=None`) inside persistent worker PROCESSES
(`SympyWorkerPool`); the caller waits on the worker's pipe with `select` and, past the limit, kills
the worker (SIGKILL also stops a hang inside a C-level big-integer power, which no signal handler
could interrupt) and starts a fresh one on the next call. Workers are plain `python -c` subprocesses
rather than `multiprocessing` children: no re-import of the caller's `__main__`, no fork of a
multi-threaded Ray worker, and they work inside daemonic processes.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
_WORKER_CODE = f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); import ray_effreason.sympy_pool as p; p._serve()"


def _sympy_equal(gold: str, prediction: str) -> bool | None:
    """math-verify on single answers (runs inside a worker): None if the gold does not parse."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    # Wrapped in one box so the whole answer is one expression ("1, 2" is a set, not two answers).
    gold_parsed = parse("\\boxed{" + gold + "}", config, parsing_timeout=None)
    if not gold_parsed:
        return None
    if not prediction:
        return False
    predicted = parse("\\boxed{" + prediction + "}", config, parsing_timeout=None)
    return bool(verify(gold_parsed, predicted, timeout_seconds=None))


def _serve() -> None:
    """Worker main loop: one JSON `[gold, prediction]` per stdin line, one JSON verdict per line."""
    import logging

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the reply stream
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import before "ready" so the first request is not slow)

    replies.write('"ready"\n')
    replies.flush()
    for line in sys.stdin:
        gold, prediction = json.loads(line)
        try:
            verdict = _sympy_equal(gold, prediction)
        except Exception:  # sympy raises all kinds of errors on odd input; a crash is "not equal"
            verdict = False
        replies.write(json.dumps(verdict) + "\n")
        replies.flush()


class _Worker:
    def __init__(self, startup_timeout_s: float):
        self.process = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0)
        try:
            ready = self._read(time.monotonic() + startup_timeout_s)
        except (TimeoutError, EOFError, ValueError):
            ready = None
        if ready != "ready":
            self.kill()
            raise RuntimeError(f"math-verify worker did not start within {startup_timeout_s} s "
                               f"(command: {sys.executable} -c {_WORKER_CODE!r})")

    def _read(self, deadline: float):
        data = b""
        fd = self.process.stdout.fileno()
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError("math-verify worker exited")
            data += chunk
        return json.loads(data)

    def request(self, gold: str, prediction: str, timeout_s: float) -> bool | None:
        self.process.stdin.write((json.dumps([gold, prediction]) + "\n").encode())
        return self._read(time.monotonic() + timeout_s)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()


class SympyWorkerPool:
    """Persistent math-verify worker processes with a hard per-comparison time limit; thread-safe.

    A comparison past `timeout_s` kills its worker and returns False; the next call starts a new one.
    Workers start lazily (about a second: importing sympy) and exit when this process does.
    """

    def __init__(self, num_workers: int = 1, startup_timeout_s: float = 120.0):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.startup_timeout_s = startup_timeout_s
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(num_workers):
            self._idle.put(None)  # None = not started yet
        self.timeouts = 0  # comparisons that hit the limit or crashed the worker (it was replaced)

    def compare(self, gold: str, prediction: str, timeout_s: float = 5.0) -> bool | None:
        """math-verify(gold, prediction) on single answers: None if the gold does not parse."""
        worker = self._idle.get()
        try:
            if worker is None or worker.process.poll() is not None:
                worker = _Worker(self.startup_timeout_s)
            try:
                return worker.request(gold, prediction, timeout_s)
            except (TimeoutError, EOFError, BrokenPipeError, ValueError):
                self.timeouts += 1
                worker.kill()
                worker = None
                return False
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.kill()


_default_pools: dict[int, SympyWorkerPool] = {}
_default_pools_lock = threading.Lock()


def default_pool() -> SympyWorkerPool:
    """This process's shared pool (one worker); a forked child gets its own, never its parent's pipes."""
    with _default_pools_lock:
        pid = os.getpid()
        if pid not in _default_pools:
            _default_pools[pid] = SympyWorkerPool()
            atexit.register(_default_pools[pid].close)
        return _default_pools[pid]
