"""Errors mmdag raises for a user's mistake; the tools print them as one line
(:func:`fail`)."""
import sys
from typing import NoReturn


class MMDagError(Exception):
    """Base class of the errors that name their fix."""


class UnsupportedModelError(MMDagError):
    """A model that no target adapter fits.

    Not a TypeError: mmengine's ``call_hook`` rewraps TypeErrors raised in hooks.
    """


class SettingError(MMDagError, ValueError):
    """A setting that does not fit the model or data, found once they are
    known (e.g. a ``target_class`` the model does not score)."""


def fail(msg: str) -> NoReturn:
    """End a tool on a user's mistake: ``error: <msg>`` on stderr, exit code 2
    (argparse's code for a bad command line)."""
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(2)
