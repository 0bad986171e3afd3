"""Errors mmdag raises for a user's mistake; the tools print them as one line."""


class MMDagError(Exception):
    """Base class of the errors that name their fix."""


class UnsupportedModelError(MMDagError):
    """A model that no target adapter fits.

    Not a TypeError: mmengine's ``call_hook`` rewraps TypeErrors raised in hooks.
    """


class SettingError(MMDagError, ValueError):
    """A setting that does not fit the model or data, found once they are
    known (e.g. a ``target_class`` the model does not score)."""
