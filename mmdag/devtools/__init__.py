"""The maintainers' room: checks of the repository itself (its docs), used
by ``tools/`` and tests, never by an attack. It imports nothing of mmdag.

- :mod:`.docs_check`: the links of README.md and docs/, and the examples
  marked runnable (``tools/check_docs.py``).
"""
