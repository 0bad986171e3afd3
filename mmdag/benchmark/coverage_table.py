"""The zoo survey's tables: per-package summaries, the coverage table of
the docs (between its markers) and the expected outcomes the slow test
compares a survey with (``tests/test_zoo/families.json``)."""
import re
from typing import Dict, Optional, Sequence

from mmdag.fileio import write_atomic
from .zoo_models import PACKAGES, SIZE

OUTCOMES = ('attacked', 'refused', 'crashed', 'no_stock_forward')
README_START = '<!-- zoo-coverage:start -->'
README_END = '<!-- zoo-coverage:end -->'


def attacked_detail(rec: dict) -> str:
    """``OneStageTargets, 40 targets`` (and what the relaxed second attack
    found, when there was one)."""
    text = f'{rec["adapter"]}, {rec["num_targets"]} targets'
    if rec['num_targets'] and rec.get('iters') == 0:
        text += ', none correct'
    again = rec.get('relaxed')
    if again:
        opts = ', '.join(f'{k}={v}' for k, v in again['targets_cfg'].items())
        text += f'; {again["num_targets"]} with {opts}'
    return text


def summarize(records: Sequence[dict]) -> Dict[str, dict]:
    """Per package: ``families``, the count of every outcome, ``runs`` (the
    families whose stock forward runs) and ``attacked_pct`` (attacked over
    runs, in %; None without runs)."""
    out = {}
    for r in records:
        s = out.setdefault(r['package'], dict(families=0, **{o: 0 for o in OUTCOMES}))
        s['families'] += 1
        s[r['outcome']] = s.get(r['outcome'], 0) + 1
    for s in out.values():
        s['runs'] = s['families'] - s['no_stock_forward']
        s['attacked_pct'] = round(100.0 * s['attacked'] / s['runs'], 1) if s['runs'] else None
    return dict(sorted(out.items(), key=lambda kv: _package_order(kv[0])))


def _package_order(package: str):
    return (PACKAGES.index(package) if package in PACKAGES else len(PACKAGES), package)


def summary_line(summary: Dict[str, dict]) -> str:
    """``mmseg: 47 of 49 families attacked (96%), 2 refused, 0 crashed, 4
    without a stock forward on the CPU; mmdet: ...``"""
    parts = []
    for package, s in summary.items():
        pct = '-' if s['attacked_pct'] is None else f'{s["attacked_pct"]:.0f}%'
        parts.append(f'{package}: {s["attacked"]} of {s["runs"]} families attacked ({pct}), '
                     f'{s["refused"]} refused, {s["crashed"]} crashed, '
                     f'{s["no_stock_forward"]} without a stock forward on the CPU')
    return '; '.join(parts)


def _cell(text) -> str:
    text = str(text if text is not None else '')
    # a compiled extension's source path names the machine that built it
    # (pip's temporary build folder): keep it from the package folder on
    text = _BUILD_PATH.sub('', text)
    return (text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('|', '\\|').replace('\n', ' '))


#: the folders before a package's own in a path (``/tmp/pip-install-x/mmcv_y/``)
_BUILD_PATH = re.compile(r'(?:/[^\s"/:]+)+/(?=(?:mmcv|mmdet|mmseg|mmengine|torch)/)')


def _short_reason(reason: str, limit: int = 120) -> str:
    """A long reason up to the end of its first sentence (the refusals list
    every supported family after it; coverage.json keeps the whole text)."""
    if len(reason) <= limit or '. ' not in reason:
        return reason
    return reason.split('. ', 1)[0] + '.'


def markdown_table(records: Sequence[dict]) -> str:
    """One row per family (family, config tested, outcome, adapter or reason),
    sorted by package then family, then the per-package summary line."""
    rows = ['| family | config tested | outcome | adapter or reason |', '|---|---|---|---|']
    for r in sorted(records, key=lambda r: (_package_order(r['package']), r['family'])):
        config = f'`{r["config"].split("::", 1)[1]}`' if r.get('config') else ''
        if config and r.get('size') and tuple(r['size']) != SIZE:
            config += f' at {r["size"][0]}x{r["size"][1]}'
        detail = (attacked_detail(r) if r['outcome'] == 'attacked'
                  else _short_reason(r['reason']))
        rows.append(f'| {_cell(r["family"])} | {config} | {r["outcome"]} '
                    f'| {_cell(detail)} |')
    text = '\n'.join(rows) + '\n'
    if records:
        text += ('\n' + summary_line(summarize(records)) + '.\n\nPercentages are over the families '
                 'whose stock forward runs on the CPU with random weights.\n')
    return text


def readme_section(records: Sequence[dict], max_iters: int = 2) -> str:
    """What goes between the README's zoo-coverage markers: how the table
    was made, then :func:`markdown_table`."""
    h, w = SIZE
    intro = (f'Zoo family coverage: one config per model-family folder of the installed mmseg '
             f'and mmdet config trees, built with random weights on the CPU, its stock '
             f'`test_step` run on one {h}x{w} image (unless the table says otherwise) with one '
             f'object, then {max_iters} DAG iterations. `attacked`: the attack ran (it says '
             f'nothing about success with trained weights); `refused`: mmdag said in one line '
             f'why not; `crashed`: anything else; `no_stock_forward`: no config of the family '
             f'runs offline on the CPU. Generated by '
             f'`python tools/analysis/zoo_coverage.py --update-docs`; checked by '
             f'`tests/test_zoo/test_zoo_coverage.py`.')
    return intro + '\n\n' + markdown_table(records)


def update_readme(readme_path: str, table: str) -> None:
    """Replace the text between ``<!-- zoo-coverage:start -->`` and
    ``<!-- zoo-coverage:end -->`` of ``readme_path`` with ``table`` (markers
    kept, everything else untouched), atomically."""
    with open(readme_path, encoding='utf-8') as f:
        text = f.read()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start or text.count(README_START) != 1 \
            or text.count(README_END) != 1:
        raise ValueError(f'{readme_path} needs exactly one {README_START} followed by one '
                         f'{README_END} line')
    head = text[:start + len(README_START)]
    new = head + '\n' + table.strip('\n') + '\n' + text[end:]
    write_atomic(readme_path, new)


def updated(rec: dict) -> bool:
    """Whether the attack changed the image: targets and at least one update,
    with the adapter's defaults or the relaxed second attack."""
    again = rec.get('relaxed') or {}
    return bool((rec.get('num_targets') and rec.get('iters'))
                or (again.get('num_targets') and again.get('iters')))


def expected_entry(rec: dict) -> dict:
    """A family's line of ``tests/test_zoo/families.json``: the outcome and
    config, and for an attacked family its adapter and whether it updated."""
    entry = dict(outcome=rec['outcome'], config=rec['config'])
    if rec['outcome'] == 'attacked':
        entry.update(adapter=rec['adapter'], updated=updated(rec))
    return entry


def expected_entries(records: Sequence[dict], previous: Optional[dict] = None) -> Dict[str, dict]:
    """What ``tests/test_zoo/families.json`` commits: family -> outcome and
    config, sorted by package then family; ``previous`` entries of families
    not in ``records`` are kept (a partial survey)."""
    entries = dict(previous or {})
    entries.update({r['family']: expected_entry(r) for r in records})
    return dict(sorted(entries.items(),
                       key=lambda kv: (_package_order(kv[0].split('::')[0]), kv[0])))
