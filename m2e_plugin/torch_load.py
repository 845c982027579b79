"""Loading PyTorch checkpoints safely, with errors a user can act on.

``torch.load(weights_only=True)`` refuses pickled Python objects, which is what makes a downloaded checkpoint safe to
open. Its error messages, though, advise re-running with ``weights_only=False`` (arbitrary code execution) even
for a file of random bytes; :func:`load_weights_only` says what the file is instead.
"""

from __future__ import annotations

import errno
import re


def load_weights_only(path, *, allow=()):
    """``torch.load(path, map_location="cpu", weights_only=True)``, with ``allow`` (classes) added to the safe
    globals; any failure is a ``ValueError`` with a short cause (see :func:`why_not_loadable`)."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(why_not_loadable(exc, path)) from None


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of ``state`` holding NaN or inf. Such weights (a damaged download, a
    diverged save) load fine and then fail every input one by one: loaders refuse them once, before any work."""
    import torch

    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def why_not_loadable(exc: BaseException, path=None) -> str:
    """The cause of a failed ``torch.load(weights_only=True)``, without torch's advice to load unsafely."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
        # torch's zip reader on a truncated torch.save file (cut within its first ~64 KB): "[Errno 22] Invalid
        # argument", which reads like a bad option rather than a damaged file.
        return "not a PyTorch checkpoint (unrecognised or damaged data)"
    if path is not None and "GLOBAL" not in text:
        with open(path, "rb") as fh:
            start = fh.read(2)
        # torch.save writes a zip (PK); older checkpoints are a pickle (protocol 2+ opens with 0x80). Anything else
        # fails inside the unpickler in ways that depend on the bytes ("pop from empty list", "invalid load key").
        if start != b"PK" and not start.startswith(b"\x80"):
            return "not a PyTorch checkpoint (unrecognised or damaged data)"
    blocked = re.search(r"\bGLOBAL ([\w.]+)", text)  # "unsupported GLOBAL x" / "Unsupported global: GLOBAL x"
    if blocked:
        return (f"it holds a pickled Python object ({blocked.group(1)}), which could run code when loaded: refused "
                "(only tensors and plain containers are loaded)")
    if re.search(r"Unsupported operand|invalid load key|central directory|zip archive|pickle data was truncated",
                 text, re.IGNORECASE):
        return "not a PyTorch checkpoint (unrecognised or damaged data)"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else type(exc).__name__
