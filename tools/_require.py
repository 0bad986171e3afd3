"""Run a tool in the project's environment.

``make demo`` and ``make test`` install everything into ``.venv``. A tool
started by another Python (``python tools/test.py ...`` in a fresh shell)
that cannot import its dependencies restarts itself with ``.venv/bin/python``
when that exists, and otherwise stops with one line saying how to get them.
"""
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VENV_PYTHON = osp.join(ROOT, '.venv', 'bin', 'python')


def require(*modules: str) -> None:
    """Make sure ``modules`` import; else re-run this tool with the project's
    Python, or exit with one line naming the fix."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if not missing:
        _check_stack()
        return
    # a venv's python is often a link to the system one: compare prefixes
    other = osp.isfile(VENV_PYTHON) and \
        osp.realpath(sys.prefix) != osp.realpath(osp.join(ROOT, '.venv'))
    if other and not os.environ.get('MMDAG_NO_REEXEC'):
        print(f'note: {", ".join(missing)} not importable by {sys.executable}; using the '
              f'project environment {osp.relpath(VENV_PYTHON)}', file=sys.stderr)
        os.environ['MMDAG_NO_REEXEC'] = '1'   # never loop
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])
    fix = (f'run it with {osp.relpath(VENV_PYTHON)} (or `source .venv/bin/activate` first)'
           if other else
           'run `make setup` (or `make test`) once, which installs them into .venv')
    sys.exit(f'error: {", ".join(missing)} not importable by {sys.executable}: {fix}')


def _check_stack() -> None:
    """An OpenMMLab stack outside mmdag's supported versions: one line."""
    if 'torch' not in sys.modules and 'mmengine' not in sys.modules:
        return   # a tool that needs no OpenMMLab package (make_synthetic_voc.py)
    sys.path.insert(0, ROOT)
    try:
        import mmdag  # noqa: F401
    except ImportError as e:
        if type(e).__name__ != 'UnsupportedStackError':
            raise
        sys.exit(f'error: {e}')


def import_standalone(name: str):
    """mmdag's module ``name`` (e.g. ``'mmdag.devtools.docs_check'``) without
    ``import mmdag``, whose stack check and registrations import torch and
    the OpenMMLab packages (seconds): for the tools that need none of them.
    The module must import nothing of mmdag; one already imported is reused."""
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util
    top, *rest = name.split('.')
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f'error: {top} not found: run the tool from a clone of mmdag or install it')
    path = osp.join(list(spec.submodule_search_locations)[0], *rest) + '.py'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
