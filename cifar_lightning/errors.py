"""The one exception type that the command line turns into a one-line message and a non-zero exit."""

from pathlib import Path


class CifarError(Exception):
    """A problem the user can fix (bad data file, missing checkpoint, bad value); the message says how."""


def not_a_file(path: str | Path) -> str:
    """Why a file the user named cannot be opened as one, for a message: a folder is there, or nothing."""
    return "is a folder, not a file" if Path(path).is_dir() else "does not exist"
