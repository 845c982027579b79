"""The one torch thread policy.

* A process that runs one model for a batch (a worker process, a Ray actor) pins its thread count once, environment
  included, with :func:`pin_threads`: ``--threads`` if given, else the model's ``torch_threads``, else 1 when several
  workers share the cores.
* Code that runs inside someone else's process (an in-process batch, a model call) changes the count only for the
  duration of the work, with :func:`torch_threads`, and gives the caller its own setting back.
* ``None`` everywhere means: leave torch's setting alone.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int | None) -> None:
    """Set this process's torch (intra-op) threads and the BLAS environment variables for good."""
    if not threads:
        return
    for var in _THREAD_VARIABLES:
        os.environ[var] = str(int(threads))
    import torch

    torch.set_num_threads(int(threads))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the previous count."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    if previous == int(threads):
        yield
        return
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
