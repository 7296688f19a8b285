"""Where torch runs (CUDA when present, else CPU) and how many CPU threads it may use.

The deep session encoders (candidates/deep) and the Task 3 generator (titles/mt5.py) both ask here.
"""

from __future__ import annotations

import os

import torch


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given ("cpu", "cuda", "cuda:1"), else CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(threads: int) -> int:
    """Cap torch's CPU threads (0: every core this process may use). Returns the count set."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n
