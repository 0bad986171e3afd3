"""Check the documentation: its links, and the examples marked runnable.

    python tools/check_docs.py --links          # README.md and docs/**/*.md
    python tools/check_docs.py --run            # the blocks marked runnable
    python tools/check_docs.py --links --run

--links: every relative link, image and ``#anchor`` of README.md and
docs/**/*.md must name an existing file, folder or heading, and every bash,
shell or python block must be marked runnable or say why not
(``<!-- not run by the docs check: why -->``); one line ``FILE:LINE: ...``
per problem. --run: every fenced block right after a
``<!-- runnable -->`` line runs (bash or python), in one fresh temporary
directory prepared by a small demo run; one line ``FILE:LINE  pass|FAIL
SECONDS s`` per block. Exit code 1 when a link is broken or a block failed.
The rules in full: :mod:`mmdag.devtools.docs_check`, which does the work.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _require import import_standalone  # noqa: E402

# the checker needs the standard library only: not `import mmdag` (torch, seconds)
docs_check = import_standalone('mmdag.devtools.docs_check')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--links', action='store_true', help='check links, images and anchors')
    p.add_argument('--run', action='store_true', help='run the blocks marked runnable')
    p.add_argument('--keep', action='store_true', help='--run: keep the temporary directory')
    p.add_argument('--timeout', type=float, default=600, help='--run: seconds per block')
    a = p.parse_args(argv)
    if not (a.links or a.run):
        p.error('say what to check: --links, --run or both')
    rc = 0
    if a.links:
        rc |= docs_check.report_links(ROOT)
    if a.run:
        rc |= docs_check.run_all(ROOT, keep=a.keep, timeout=a.timeout)
    return rc


if __name__ == '__main__':
    sys.exit(main())
