"""The ``mmdag`` command: the project's tools from any directory.

    mmdag test CONFIG CHECKPOINT --attack dag [...]   # tools/test.py, same flags
    mmdag dist-test CONFIG CHECKPOINT GPUS [...]      # the same under torchrun
    mmdag train CONFIG [...]                          # tools/train.py
    mmdag benchmark [LIST] [...]                      # tools/zoo_benchmark.py
    mmdag demo [...]                                  # tools/demo.py, in this directory
    mmdag make-data ROOT [...]                        # tools/make_synthetic_voc.py
    mmdag configs                                     # the configs mmdag ships

CONFIG may be a path, ``mmdag::dag/<name>.py`` or ``configs/...`` (mmdag's own
configs, wherever mmdag is installed). Outputs go below the current directory.
``python -m mmdag ...`` is the same command, so ``torchrun -m mmdag test ...
--launcher pytorch`` runs it distributed.
"""
import os
import os.path as osp
import runpy
import subprocess
import sys
from typing import List, Optional

from .paths import project_root, tool_path

#: sub-command -> tool script
TOOLS = {
    'test': 'test',
    'train': 'train',
    'benchmark': 'zoo_benchmark',
    'demo': 'demo',
    'make-data': 'make_synthetic_voc',
}


def run_tool(name: str, args: List[str]) -> int:
    """Run ``tools/<name>.py`` in this process, as ``python tools/<name>.py
    ARGS`` would, and return its exit status."""
    script = tool_path(name)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    sys.path.insert(0, osp.dirname(script))
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    return 0


def dist_test(args: List[str]) -> int:
    """``mmdag dist-test CONFIG CHECKPOINT GPUS [ARGS]``: tools/dist_test.sh's
    launch (torchrun, one process per GPU) of ``mmdag test``."""
    if len(args) < 3 or not args[2].isdigit():
        print('usage: mmdag dist-test CONFIG CHECKPOINT GPUS [tools/test.py arguments]',
              file=sys.stderr)
        return 2
    config, checkpoint, gpus, rest = args[0], args[1], args[2], args[3:]
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
           f'--master_port={os.environ.get("PORT", "29500")}',
           '-m', 'mmdag', 'test', config, checkpoint, '--launcher', 'pytorch', *rest]
    return subprocess.call(cmd)


def list_configs() -> int:
    root = osp.join(project_root(), 'configs')
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith('.py'):
                print('mmdag::' + osp.relpath(osp.join(d, f), root).replace(os.sep, '/'))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] in ('-V', '--version'):
        from .version import __version__
        print(f'mmdag {__version__}')
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in TOOLS:
        return run_tool(TOOLS[cmd], rest)
    if cmd == 'dist-test':
        return dist_test(rest)
    if cmd == 'configs':
        return list_configs()
    print(f'mmdag: unknown command {cmd!r}; one of: {", ".join([*TOOLS, "dist-test", "configs"])} '
          '(mmdag --help)', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
