"""The model-zoo benchmark's run (``tools/zoo_benchmark.py``).

Every entry of a model list (:mod:`mmdag.benchmark.zoo_list`) is attacked by
``tools/test.py``, in its own work dir, on one device or under a launcher; a
model finished with the same settings is skipped, a killed one resumed. Then
come the worst-case runs of the budgeted attacks and the transfer runs
(:mod:`mmdag.benchmark.zoo_followups`), the tables
(:mod:`mmdag.benchmark.zoo_tables`) and the pictures
(:mod:`mmdag.benchmark.plots`).

``args`` below is the tool's parsed command line: ``list``, ``work_dir``,
``models``, ``attack_options``, ``cfg_options``, ``attacks``,
``det_attacks``, ``budget_options``, ``num_figures``, ``transfer``,
``launcher``, ``gpus``, ``port``, ``partition``, ``srun_args`` and
``verbose``. ``test_tool`` is the path of ``tools/test.py`` and ``root``
the directory put first on the runs' ``PYTHONPATH``.
"""
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from mmdag.contract import REPORT_FILE, work_path
from mmdag.errors import MMDagError
from .zoo_entry import read_entry, write_entry
from .zoo_progress import Progress, RunProgress

#: the log of a model's run, in its work dir
LOG_FILE = 'benchmark.log'


def cli_value(v) -> str:
    """A value as mmengine's DictAction reads it back."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, tuple):
        return '(' + ','.join(cli_value(x) for x in v) + ('' if len(v) != 1 else ',') + ')'
    if isinstance(v, list):
        return '[' + ','.join(cli_value(x) for x in v) + ']'
    return str(v)


def options(flag: str, opts: dict) -> list:
    """``[flag, 'key=value', ...]`` as DictAction reads it back; [] when empty."""
    return [flag, *(f'{k}={cli_value(v)}' for k, v in opts.items())] if opts else []


def launch(args, name: str, test_args: list, test_tool: str) -> list:
    """The command line of one ``tools/test.py`` run under the chosen launcher.

    Raises:
        MMDagError: ``--launcher slurm`` without ``--partition``.
    """
    py = sys.executable
    if args.launcher == 'pytorch':
        return [py, '-m', 'torch.distributed.run', f'--nproc_per_node={args.gpus}',
                f'--master_port={args.port}', test_tool, *test_args, '--launcher', 'pytorch']
    if args.launcher == 'slurm':
        if not args.partition:
            raise MMDagError('--launcher slurm needs --partition NAME')
        per_node = min(args.gpus, 8)
        return ['srun', '-p', args.partition, f'--job-name=mmdag_{name}', f'--gres=gpu:{per_node}',
                f'--ntasks={args.gpus}', f'--ntasks-per-node={per_node}', '--cpus-per-task=5',
                '--kill-on-bad-exit=1', *args.srun_args.split(), py, '-u', test_tool,
                *test_args, '--launcher', 'slurm']
    return [py, test_tool, *test_args]


def run_model(args, cmd: list, work_dir: str, prog: Progress, root: str) -> int:
    """Run one ``tools/test.py`` command; its output goes to
    ``work_dir/benchmark.log`` (and to the console with ``--verbose``) while
    the bar follows its records. Returns its exit status."""
    os.makedirs(work_dir, exist_ok=True)
    log_path = osp.join(work_dir, LOG_FILE)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))
    with open(log_path, 'a') as log:
        log.write(f'\n$ {" ".join(cmd)}\n')
        log.flush()
        out = None if args.verbose else log
        proc = subprocess.Popen(cmd, env=env, stdout=out,
                                stderr=subprocess.STDOUT if out else None)
        images = RunProgress(work_dir)
        try:
            while proc.poll() is None:
                prog.update_images(*images.poll())
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        prog.update_images(*images.poll())
    return proc.returncode


def failure_reason(work_dir: str) -> str:
    """The run's own one-line error, else its last line."""
    try:
        with open(osp.join(work_dir, LOG_FILE), errors='replace') as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return 'no log'
    errors = [ln for ln in lines if ln.startswith('error:')]
    return (errors or lines or ['no output'])[-1][:300]


def summary_line(k: int, n: int, row: Optional[dict], wall: float,
                 source: Optional[str] = None) -> str:
    """The console line of the k-th of n finished runs (``source``: the model
    whose perturbations a transfer run applied)."""
    if row is None:
        return f'[zoo] {k}/{n}: no report'
    if source:   # a transfer run: no attack, the drop is the figure
        drop = (row['ORIG'] - row['ADVR']) if None not in (row['ORIG'], row['ADVR']) else None
        return (f"[zoo] {k}/{n} {row['model']}: {row['metric']} ORIG {row['ORIG']} under the "
                f"perturbations of {source} {row['ADVR']} (drop "
                f"{'-' if drop is None else round(drop, 2)}) | {row['images']} images, "
                f"{wall:.0f} s wall")
    succ = '-' if row['success'] is None else f"{100 * row['success']:.1f}%"
    return (f"[zoo] {k}/{n} {row['model']}: {row['metric']} ORIG {row['ORIG']} ADVR "
            f"{row['ADVR']} PERM {row['PERM']} | iters {row['iters_mean']} (median "
            f"{row['iters_median']}), success {succ} | {row['images']} images, "
            f"{row['sec_per_image']} s/img attack, {wall:.0f} s wall")


def run_options(args, entry: dict) -> dict:
    """The benchmark-wide settings a model's run depends on."""
    return dict(num_figures=args.num_figures, transfer=bool(args.transfer),
                global_attack_options=args.attack_options, global_cfg_options=args.cfg_options,
                transfer_from=entry.get('transfer_from'),
                source_finished=entry.get('source_finished'))


def test_arguments(args, entry: dict, ckpt: str, work_dir: str, what: str) -> list:
    """The ``tools/test.py`` arguments of an entry's run (``what``: ``'start'``
    or ``'resume'``)."""
    attack = entry.get('attack', 'dag')
    test_args = [entry['config'], ckpt, '--work-dir', work_dir, '--attack', attack,
                 '--num-figures', '0' if entry.get('transfer_from') or attack != 'dag'
                 else str(args.num_figures)]
    if entry.get('transfer_from'):
        test_args += ['--perturbations', entry['transfer_from'], '--resize-perturbations']
    elif args.transfer and attack == 'dag':
        test_args.append('--save-perturbations')
    if what == 'resume':
        test_args.append('--resume')
    # --attack-options are DAG's; a worst-case run has its own (budget_options)
    test_args += options('--attack-options', {**entry['attack_options'],
                                              **(args.attack_options if attack == 'dag'
                                                 else {})})
    test_args += options('--cfg-options', {**entry['cfg_options'], **args.cfg_options})
    return test_args


def _random_weights(entry: dict, fp: dict, work_dir: str) -> str:
    """The random-weight checkpoint of an entry: one file per config
    content, cfg_options and seed."""
    from .zoo_list import random_checkpoint
    key = hashlib.sha1(json.dumps([fp['config_sha1'], fp['cfg_options'], entry['seed']],
                                  sort_keys=True).encode()).hexdigest()[:8]
    return random_checkpoint(entry['config'], entry['cfg_options'],
                             osp.join(work_dir, f'random_weights_{key}.pth'), entry['seed'])


def run_list(args, entries: List[dict], bench_dir: str, prog: Progress, test_tool: str,
             root: str) -> Dict[str, dict]:
    """Attack every entry (skip, resume or start); return {name: dict(row, ran)}."""
    from mmdag.engine.records import keep_aside
    from .zoo_list import RANDOM, fingerprint, plan
    from .zoo_tables import model_row
    results = {}
    n = len(entries)
    for k, e in enumerate(entries, 1):
        name = e['name']
        wd = e.get('work_dir') or osp.join(bench_dir, name)   # transfer runs name theirs
        fp = fingerprint(e, run_options(args, e))
        what = plan(wd, fp)
        prog.start_model(name)
        if what == 'skip':
            prog.line(f'[zoo] {k}/{n} {name}: finished earlier with these settings, skipped '
                      f'(delete {wd} to run it again)')
            results[name] = dict(row=model_row(name, wd), ran=False)
            prog.end_model()
            continue
        if what == 'start' and read_entry(wd):
            kept = keep_aside(work_path(wd, REPORT_FILE), '.json')
            prog.line(f'[zoo] {k}/{n} {name}: settings changed since the run in {wd}: '
                      'attacking again' + (f' (earlier report kept as {kept})' if kept else ''))
        ckpt = e['checkpoint']
        if ckpt == RANDOM:
            try:
                ckpt = _random_weights(e, fp, wd)
            except Exception as err:   # a broken config: this model fails, the list goes on
                reason = f'cannot build {e["config"]} with random weights: ' \
                         f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
                prog.line(f'[zoo] {k}/{n} {name}: FAILED: {reason}')
                results[name] = dict(row=dict(model=name, failed=reason), ran=True)
                prog.end_model()
                continue
        test_args = test_arguments(args, e, ckpt, wd, what)
        prog.line(f'[zoo] {k}/{n} {name}: ' + ('resuming the killed run' if what == 'resume'
                                               else 'attacking') + f' (log: {wd}/{LOG_FILE})')
        started = time.time()
        write_entry(wd, dict(fingerprint=fp, status='running',
                             started_at=time.strftime('%Y-%m-%d %H:%M:%S %Z')))
        rc = run_model(args, launch(args, name, test_args, test_tool), wd, prog, root)
        wall = time.time() - started
        if rc != 0:
            reason = failure_reason(wd)
            write_entry(wd, dict(fingerprint=fp, status='failed', reason=reason,
                                 wall_seconds=round(wall, 1)))
            prog.line(f'[zoo] {k}/{n} {name}: FAILED (exit {rc}): {reason}  '
                      f'(log: {wd}/{LOG_FILE})')
            results[name] = dict(row=dict(model=name, failed=reason), ran=True)
        else:
            write_entry(wd, dict(fingerprint=fp, status='finished', wall_seconds=round(wall, 1),
                                 finished_at=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                                 command=' '.join(test_args)))
            row = model_row(name, wd)
            prog.line(summary_line(k, n, row, wall, e.get('source')))
            results[name] = dict(row=row or dict(model=name, failed='no report'), ran=True)
        prog.end_model()
    return results


def load_entries(list_path: str) -> List[dict]:
    """The entries of a model list, their configs resolved as the tools
    resolve them (relative paths are read from the current directory;
    ``configs/...`` not found there are mmdag's own).

    Raises:
        MMDagError: a bad list (:func:`mmdag.benchmark.zoo_list.load_model_list`).
    """
    from mmdag.paths import resolve_config
    from .zoo_list import load_model_list
    entries = load_model_list(resolve_config(list_path))
    for e in entries:
        e['config'] = resolve_config(e['config'])
    return entries


def bench_dir_of(args) -> str:
    """``--work-dir``, else ``work_dirs/zoo_benchmark/<list name>``."""
    return args.work_dir or osp.join('work_dirs', 'zoo_benchmark',
                                     osp.splitext(osp.basename(args.list))[0])


def models_selected(args, entries: List[dict]) -> List[dict]:
    """The entries named by ``--models`` (all without it).

    Raises:
        MMDagError: a name not in the list.
    """
    if not args.models:
        return entries
    unknown = sorted(set(args.models) - {e['name'] for e in entries})
    if unknown:
        raise MMDagError(f'{unknown} not in {args.list}; its models: '
                         + ', '.join(e['name'] for e in entries))
    return [e for e in entries if e['name'] in args.models]


def clear_temporaries(bench_dir: str, entries: List[dict]) -> int:
    """Remove the temporary files of a benchmark killed inside a write (its
    tables, pictures, entry files); each model's run clears its own work dir
    likewise. Returns how many were removed."""
    from mmdag.fileio import remove_temporaries
    transfer_dir = osp.join(bench_dir, 'transfer')
    return remove_temporaries(
        [bench_dir, osp.join(bench_dir, 'pictures')]
        + [osp.join(bench_dir, e['name']) for e in entries]
        + ([osp.join(transfer_dir, d) for d in os.listdir(transfer_dir)]
           if osp.isdir(transfer_dir) else []))


def _finished(args, entry: dict, work_dir: str) -> bool:
    """Whether the entry's run in ``work_dir`` finished with these settings."""
    from .zoo_list import fingerprint, plan
    return plan(work_dir, fingerprint(entry, run_options(args, entry))) == 'skip'


def add_budget_runs(args, entries: List[dict], selected: List[dict], rows: List[dict],
                    bench_dir: str, budget: Tuple[list, list, dict], test_tool: str,
                    root: str) -> bool:
    """The worst-case run of each finished model over the budgeted attacks
    (``budget``: :func:`mmdag.benchmark.zoo_followups.budget_settings`); its
    figures go in the model's row under ``'attacks'``. Only the ``selected``
    models run: the others' finished runs go in the tables. Returns whether
    any ran."""
    from .zoo_followups import budget_entries
    from .zoo_tables import budget_row
    good = {r['model']: r for r in rows if not r.get('failed')}
    runs = budget_entries([e for e in entries if e['name'] in good], good, bench_dir, *budget)
    todo = [b for b in runs if b['model'] in {e['name'] for e in selected}]
    results = {}
    if todo:
        with Progress(len(todo)) as prog:
            results = run_list(args, todo, bench_dir, prog, test_tool, root)
    for row in rows:
        run = next((b for b in runs if b['model'] == row['model']), None)
        if run is None:
            continue
        got = (results.get(run['name']) or {}).get('row') or {}
        if got.get('failed'):
            row['attacks'] = dict(failed=got['failed'])
        elif run in todo or _finished(args, run, run['work_dir']):
            row['attacks'] = budget_row(run['work_dir'])
    return any(r['ran'] for r in results.values())


def transfer_runs(args, entries: List[dict], rows: List[dict], bench_dir: str,
                  test_tool: str, root: str) -> bool:
    """Every finished model's perturbations applied to every other finished
    model of its task, and the transfer matrix (``transfer.md``, ``.json``
    and the console). Returns whether any run ran."""
    from .zoo_followups import transfer_entries
    from .zoo_tables import transfer_table, write_if_changed
    good = {r['model']: r for r in rows if not r.get('failed')}
    finished = [e for e in entries if e['name'] in good]
    pairs = transfer_entries(finished, good, bench_dir)
    if not pairs:
        print('\n[zoo] --transfer: no two finished models of one task')
        return False
    with Progress(len(pairs)) as prog:
        results = run_list(args, pairs, bench_dir, prog, test_tool, root)
    text, data = transfer_table(finished, [p for p in pairs
                                           if not results[p['name']]['row'].get('failed')],
                                bench_dir)
    write_if_changed(osp.join(bench_dir, 'transfer.md'),
                     'Transfer: drop ORIG - ADVR (%) of the model of the column under '
                     'the perturbations made on the model of the row.\n\n' + text + '\n')
    write_if_changed(osp.join(bench_dir, 'transfer.json'), json.dumps(data, indent=2) + '\n')
    print('\nTransfer (ORIG - ADVR, %; rows: made on, columns: applied to)\n' + text)
    return any(r['ran'] for r in results.values())


def run_benchmark(args, test_tool: str, root: str) -> int:
    """The whole benchmark of ``args.list``: the models, the budgeted attacks'
    worst-case runs, the pictures, the tables and (``--transfer``) the
    transfer runs. Returns the exit status: 1 when a model failed.

    Raises:
        MMDagError: a bad list, ``--models``, ``--attacks`` or
            ``--det-attacks``, a work dir that cannot be made, ``--launcher
            slurm`` without ``--partition``.
    """
    from mmdag.paths import resolve_config
    from .plots import model_pictures, variants_chart
    from .zoo_followups import budget_settings
    from .zoo_tables import format_rows, model_row, write_tables
    entries = load_entries(args.list)
    attacks, det_attacks, budget = budget_settings(resolve_config(args.list), args.attacks,
                                                   args.det_attacks, args.budget_options)
    selected = models_selected(args, entries)
    bench_dir = bench_dir_of(args)
    try:
        os.makedirs(bench_dir, exist_ok=True)
    except OSError as e:
        raise MMDagError(f'cannot create {bench_dir} ({e.strerror}): pass --work-dir DIR '
                         'somewhere you can write') from None
    removed = clear_temporaries(bench_dir, entries)
    if removed:
        print(f'[zoo] removed {removed} temporary files left by a killed benchmark')
    t0 = time.time()
    with Progress(len(selected)) as prog:
        results = run_list(args, selected, bench_dir, prog, test_tool, root)
    ran = any(r['ran'] for r in results.values())
    # the tables cover the whole list: the models not selected (--models)
    # with their finished runs of these settings
    for e in entries:
        wd = osp.join(bench_dir, e['name'])
        if e['name'] not in results and _finished(args, e, wd):
            results[e['name']] = dict(row=model_row(e['name'], wd), ran=False)
    entries = [e for e in entries if e['name'] in results]
    rows = [results[e['name']]['row'] or dict(model=e['name'], failed='no report')
            for e in entries]
    meta = dict(list=args.list, attack_options=args.attack_options,
                cfg_options=args.cfg_options, launcher=args.launcher,
                processes=args.gpus if args.launcher != 'none' else 1)
    if attacks or det_attacks:
        ran = add_budget_runs(args, entries, selected, rows, bench_dir,
                              (attacks, det_attacks, budget), test_tool, root) or ran
        meta.update(attacks=attacks, det_attacks=det_attacks, budget_options=budget)
    pic_dir = osp.join(bench_dir, 'pictures')
    for e, row in zip(entries, rows):
        if not row.get('failed'):
            model_pictures(e['name'], osp.join(bench_dir, e['name']), pic_dir)
    paths = write_tables(bench_dir, rows, meta)
    if paths['changed'] or not osp.isfile(osp.join(pic_dir, 'variants.png')):
        variants_chart(rows, osp.join(pic_dir, 'variants.png'))
    print('\n' + format_rows(rows))
    if args.transfer:
        ran = transfer_runs(args, entries, rows, bench_dir, test_tool, root) or ran
    failed = [r['model'] for r in rows if r.get('failed')]
    print(f'\n[zoo] {len(entries)} models: {len(entries) - len(failed)} with results'
          + (f', {len(failed)} failed ({", ".join(failed)})' if failed else '')
          + ('' if ran else '; nothing to run, every model finished earlier')
          + f'; {time.time() - t0:.0f} s')
    print(f"[zoo] tables: {paths['benchmark.md']}, .csv, .json; pictures: {pic_dir}/")
    return 1 if failed else 0
