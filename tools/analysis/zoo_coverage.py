"""Zoo family coverage: for every model family of the installed mmseg and
mmdet config trees, build one config with random weights on the CPU, run its
stock forward, ask mmdag for a few DAG iterations and classify the family
(attacked, refused, crashed, no_stock_forward).

    python tools/analysis/zoo_coverage.py [--families mmdet::rtmdet mmseg::fcn ...] \
        [--packages mmdet] [--out work_dirs/zoo_coverage] [--update-docs] \
        [--write-expected tests/test_zoo/families.json] [--max-iters 2] [--strict]

Writes coverage.json and coverage.md into --out; --update-docs (formerly
--update-readme, still accepted) also replaces the generated table of
docs/notes/zoo_coverage.md. Exit code 0 unless the survey itself breaks; with
--strict 1 when a family crashed.
"""
import argparse
import json
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: the page holding the generated table, between the zoo-coverage markers
DOCS_TABLE = osp.join('docs', 'notes', 'zoo_coverage.md')
sys.path.insert(0, ROOT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--families', nargs='+', metavar='PKG::FOLDER',
                   help='families to survey, e.g. mmdet::rtmdet mmseg::fcn (default: all)')
    p.add_argument('--packages', nargs='+', choices=['mmseg', 'mmdet'], default=['mmseg', 'mmdet'],
                   help='packages whose families are surveyed when --families is not given')
    p.add_argument('--out', default='work_dirs/zoo_coverage',
                   help='folder of coverage.json and coverage.md')
    p.add_argument('--max-iters', type=int, default=2, help='DAG iterations per family')
    p.add_argument('--update-docs', '--update-readme', dest='update_docs', action='store_true',
                   help=f'replace the table between the zoo-coverage markers of {DOCS_TABLE} '
                        '(--update-readme: its former name)')
    p.add_argument('--write-expected', metavar='JSON',
                   help='write the outcome and config of every family here '
                        '(tests/test_zoo/families.json)')
    p.add_argument('--strict', action='store_true', help='exit 1 when a family crashed')
    a = p.parse_args(argv)

    try:
        import mmengine  # noqa: F401
    except ImportError:
        print('error: mmengine is not importable: run this tool with the project\'s environment, '
              f'{osp.join(ROOT, ".venv", "bin", "python")} {" ".join(sys.argv)}')
        return 1
    from mmdag.benchmark import coverage as cov

    full = not a.families and set(a.packages) == {'mmseg', 'mmdet'}
    if a.update_docs and not full:
        p.error(f'--update-docs needs the full survey (no --families or --packages): the table of '
                f'{DOCS_TABLE} lists every family')
    families = a.families
    if families:
        bad = [f for f in families if f.count('::') != 1 or f.split('::')[0] not in cov.PACKAGES]
        if bad:
            p.error(f'families are named PKG::FOLDER with PKG in {cov.PACKAGES}: {" ".join(bad)}')
    else:
        families = cov.list_families(tuple(a.packages))
    t0 = time.perf_counter()
    records = cov.survey(families, max_iters=a.max_iters, progress=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0

    table = cov.readme_section(records, max_iters=a.max_iters)
    summary = cov.summarize(records)
    cov.write_atomic(osp.join(a.out, 'coverage.json'),
                     json.dumps(dict(records=records, summary=summary, seconds=round(wall, 1),
                                     max_iters=a.max_iters), indent=2) + '\n')
    cov.write_atomic(osp.join(a.out, 'coverage.md'), table)
    if a.update_docs:
        cov.update_readme(osp.join(ROOT, DOCS_TABLE), table)
    if a.write_expected:
        entries = cov.expected_entries(records)
        if not full and osp.isfile(a.write_expected):
            # a partial survey updates its families and keeps the others
            with open(a.write_expected) as f:
                old = json.load(f)
            entries = cov.expected_entries(records, previous=old)
        cov.write_atomic(a.write_expected, json.dumps(entries, indent=2) + '\n')

    print(cov.summary_line(summary))
    slowest = sorted(records, key=lambda r: -r['seconds'])[:5]
    print(f'{len(records)} families in {wall / 60:.1f} min; slowest: '
          + ', '.join(f'{r["family"]} {r["seconds"]:.0f} s' for r in slowest))
    crashed = [r for r in records if r['outcome'] == 'crashed']
    for r in crashed:
        print(f'crashed: {r["family"]}: {r["reason"]}')
    print(f'wrote {osp.join(a.out, "coverage.json")} and coverage.md')
    return 1 if a.strict and crashed else 0


if __name__ == '__main__':
    sys.exit(main())
