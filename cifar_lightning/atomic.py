"""The package's one atomic write: every file it writes (data, checkpoints, results, figures, the report), and
the one message for a disk or folder that refuses a write."""

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifar_lightning.errors import CifarError

# A full disk, a spent quota, a read-only file system, a folder that is not ours: the user's to fix.
REFUSED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def refused(err: OSError, path: str | Path) -> CifarError | None:
    """The error a write refused by the disk or folder becomes (naming ``path``), or None for any other."""
    if err.errno not in REFUSED:
        return None
    return CifarError(f"cannot write {path}: {err.strerror or err}; no file was left half-written")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Writes to ``path`` that the disk or folder refuses end in one :class:`CifarError` naming it."""
    try:
        yield
    except OSError as err:
        if (error := refused(err, path)) is None:
            raise
        raise error from None


def make_folder(folder: Path, option: str) -> None:
    """Make the folder an output goes in before the work that fills it: a file in the way, or a place no folder can
    be made, is one error naming the option instead of a traceback once the work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CifarError(f"cannot write {option}: {folder} is a file, not a folder") from None
    except OSError as err:
        raise CifarError(f"cannot write {option}: {err.strerror}; name a folder you can write") from None


def in_folder(path: str | Path, name: str) -> Path:
    """An output path that names a folder means the file's usual ``name`` inside it, as ``cp`` reads one."""
    path = Path(path)
    return path / name if path.is_dir() else path


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync, then rename: a crash leaves
    the old file or none, never a truncated one under the final name. The one atomic write of the package."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _mode_for(path))  # mkstemp's file is private (0600): readable like any file written here
            with os.fdopen(fd, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _mode_for(path: Path) -> int:
    """The mode the file would have had from ``open``: an existing file's own, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it is racy)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration):
        umask = os.umask(0o022)
        os.umask(umask)
        return umask
