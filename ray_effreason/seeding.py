"""One seed function for every sample, in training and in evaluation."""

from __future__ import annotations

import hashlib


def sample_seed(seed: int, *key: str | int) -> int:
    """A 32-bit seed from the run's seed and the sample's key: the same whatever the batch, worker or resume.

    Training keys a sample by (step, prompt_index, sample_index); evaluation by (task, problem_id,
    sample_index, purpose). Each part is written out, so ("a", 1) and ("a1",) differ.

    >>> first = sample_seed(0, "gsm8k", "gsm8k-0", 0, "sample")
    >>> first == sample_seed(0, "gsm8k", "gsm8k-0", 0, "sample")
    True
    >>> first == sample_seed(0, "gsm8k", "gsm8k-0", 1, "sample")
    False
    """
    digest = hashlib.sha256("|".join(str(part) for part in (seed, *key)).encode()).digest()
    return int.from_bytes(digest[:4], "big")
