"""Check that installing mmdag left a user's OpenMMLab stack as it was.

    python tools/check_stack_kept.py save FILE      # before `pip install mmdag`
    python tools/check_stack_kept.py compare FILE   # after: one line per change, exit 1

Reads the installed distributions' versions (no imports), so it runs on any
stack mmdag supports or not.
"""
import json
import sys
from importlib import metadata

#: what a user's environment holds and an install of mmdag must not touch
KEPT = ('torch', 'numpy', 'setuptools', 'mmcv', 'mmengine', 'mmdet', 'mmsegmentation')


def versions():
    found = {}
    for name in KEPT:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def main(argv):
    if len(argv) != 3 or argv[1] not in ('save', 'compare'):
        sys.exit(__doc__.strip().splitlines()[0] + '\nusage: check_stack_kept.py save|compare FILE')
    if argv[1] == 'save':
        with open(argv[2], 'w') as f:
            json.dump(versions(), f, indent=1)
        return 0
    with open(argv[2]) as f:
        before = json.load(f)
    now = versions()
    changed = [f'{k}: {before.get(k)} -> {now[k]}' for k in KEPT if before.get(k) != now[k]]
    for line in changed:
        print(f'[stack] installing mmdag changed {line}', file=sys.stderr)
    if not changed:
        print('[stack] kept: ' + ', '.join(f'{k} {v}' for k, v in now.items() if v))
    return 1 if changed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
