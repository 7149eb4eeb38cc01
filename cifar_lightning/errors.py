"""The one exception type that the command line turns into a one-line message and a non-zero exit."""


class CifarError(Exception):
    """A problem the user can fix (bad data file, missing checkpoint, bad value); the message says how."""
