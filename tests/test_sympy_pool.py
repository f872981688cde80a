"""The sympy worker pool: a hung comparison is killed at its limit, from a thread, and the pool recovers."""

import threading
import time

from ray_effreason.sympy_pool import SympyWorkerPool


def test_worker_pool_kills_a_hung_comparison_and_recovers_in_a_thread():
    # Straight to the worker, past the pre-checks: sympy evaluates 10^(10^10) "forever".
    pool = SympyWorkerPool(num_workers=1)
    try:
        assert pool.compare("\\frac{1}{2}", "0.5", timeout_s=30.0) is True  # started, warm
        outcome = {}

        def hang():
            start = time.monotonic()
            outcome["verdict"] = pool.compare("5", "10^{10^{10}} + 1", timeout_s=1.0)
            outcome["seconds"] = time.monotonic() - start

        thread = threading.Thread(target=hang)
        thread.start()
        thread.join(timeout=30)
        assert outcome["verdict"] is False
        assert outcome["seconds"] < 5.0
        assert pool.timeouts == 1
        assert pool.compare("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", timeout_s=30.0) is True  # a fresh worker
    finally:
        pool.close()
