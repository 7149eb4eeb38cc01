"""The package's one atomic write: every file it writes (data, checkpoints, results, figures, the report)."""

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync, then rename: a crash leaves
    the old file or none, never a truncated one under the final name. The one atomic write of the package."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
