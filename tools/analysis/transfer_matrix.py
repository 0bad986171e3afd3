"""Transfer matrix of attack runs: rows = where r was made, columns = where it was
applied, cells = ORIG - ADVR of the headline metric (mIoU or mAP, in %).

    python tools/analysis/transfer_matrix.py work_dirs/A work_dirs/B \
        work_dirs/A_on_B work_dirs/B_on_A work_dirs/AB_on_C [--out matrix.json]

Each argument is a work dir (or an attack_report.json) of tools/test.py: an
attack run is a diagonal cell (white box), a run with --perturbations
is a transfer cell. A source is named by the config of the run that saved
its perturbations when that run's work dir is among the arguments or next to
the perturbation directory.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))   # tools/
from _require import require  # noqa: E402

require('torch', 'mmengine')

from mmdag.contract import REPORT_FILE, work_path  # noqa: E402
from mmdag.summary import format_matrix, read_report, transfer_matrix  # noqa: E402


def load(path):
    f = work_path(path, REPORT_FILE) if osp.isdir(path) else path
    if not osp.isfile(f):
        sys.exit(f'error: no {REPORT_FILE} at {path}: pass the work dir of a tools/test.py '
                 'run with --attack or --perturbations')
    return read_report(f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('runs', nargs='+', help=f'work dirs (or {REPORT_FILE} files)')
    p.add_argument('--out', help='also write the matrix as JSON here')
    a = p.parse_args(argv)
    reports = {r: load(r) for r in a.runs}
    sources = {}
    for rep in reports.values():
        for d in (rep.get('settings') or {}).get('transfer_from') or []:
            f = work_path(osp.dirname(osp.normpath(d)), REPORT_FILE)
            if osp.isfile(f):
                sources[osp.normpath(d)] = read_report(f)
    rows, cols, cells = transfer_matrix(reports, sources)
    print(format_matrix(rows, cols, cells))
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(dict(rows=rows, cols=cols,
                           cells=[dict(made_on=r, applied_to=c, drop=v)
                                  for (r, c), v in cells.items()]), f, indent=2)


if __name__ == '__main__':
    main()
