"""Benchmark DAG over a list of models: Table 1 (ORIG / ADVR / PERM) per model.

    python tools/zoo_benchmark.py [LIST] [--work-dir DIR] [--launcher pytorch --gpus 8]

LIST is a model list (configs/benchmark/voc_zoo.py, the default: the zoo
models of configs/dag/ with their checkpoint URLs; configs/benchmark/demo.py:
the demo models). Every model is attacked by ``tools/test.py`` (the stock
test loop with mmdag's hook), in ``DIR/<name>``, on one device or under a
launcher. A model finished with the same settings is skipped; a killed one
is resumed (``tools/test.py --resume``). At the end, in DIR:

- ``benchmark.md``, ``benchmark.csv``, ``benchmark.json``: one row per model
  (ORIG, ADVR, PERM, iterations mean and median, p, L-inf, success, seconds
  per image, device, date, versions, settings);
- ``pictures/``: per model a convergence plot, a histogram of iterations and
  a Figure-1 picture; ``variants.png``, ORIG / ADVR / PERM of every model;
- with ``--transfer``: every model's perturbations applied to every other
  model of the same task, and the transfer matrix (``transfer.md``/``.json``).
"""
import argparse
import glob
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_TOOL = osp.join(osp.dirname(osp.abspath(__file__)), 'test.py')
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _require import require  # noqa: E402

require('torch', 'mmengine')

DEFAULT_LIST = 'configs/benchmark/voc_zoo.py'


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('list', nargs='?', default=DEFAULT_LIST,
                   help=f'model list (.py/.json/.yaml with `models`); default {DEFAULT_LIST}')
    p.add_argument('--work-dir', help='default: work_dirs/zoo_benchmark/<list name>')
    p.add_argument('--models', nargs='+', metavar='NAME', help='only these entries of the list')
    p.add_argument('--attack-options', nargs='+', action=DictAction, default={},
                   help='DAG arguments for every model (over the list\'s), e.g. max_iters=50')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='config overrides for every model (over the list\'s)')
    p.add_argument('--attacks', nargs='+', metavar='ATTACK',
                   help='budgeted attacks to run on every segmentation model besides DAG, in '
                   'one worst-case run per model (e.g. pgd segpgd): a column per attack and '
                   'the worst case per image (over the list\'s `attacks`; `none`: none)')
    p.add_argument('--det-attacks', nargs='+', metavar='ATTACK',
                   help='the same for every detector (e.g. detpgd togvanishing), over the '
                   "list's `det_attacks`; `none`: none")
    p.add_argument('--budget-options', nargs='+', action=DictAction, default={},
                   help='settings of those attacks (over the list\'s `budget_options`), e.g. '
                   'epsilon=4 max_iters=20')
    p.add_argument('--num-figures', type=int, default=1,
                   help='Figure-1 pictures saved per model (default 1)')
    p.add_argument('--transfer', action='store_true',
                   help='also apply each model\'s perturbations to every other model of its '
                   'task (the runs save their perturbations)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--gpus', type=int, default=1,
                   help='processes per model under --launcher (one per GPU)')
    p.add_argument('--port', type=int, default=29533, help='torchrun master port')
    p.add_argument('--partition', help='slurm partition (--launcher slurm)')
    p.add_argument('--srun-args', default='',
                   help='more srun arguments (--launcher slurm), e.g. --srun-args="--qos=high"')
    p.add_argument('--verbose', action='store_true',
                   help='show the runs\' output (default: in DIR/<name>/benchmark.log)')
    return p.parse_args(argv)


def cli_value(v) -> str:
    """A value as mmengine's DictAction reads it back."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, tuple):
        return '(' + ','.join(cli_value(x) for x in v) + ('' if len(v) != 1 else ',') + ')'
    if isinstance(v, list):
        return '[' + ','.join(cli_value(x) for x in v) + ']'
    return str(v)


def options(flag, opts: dict) -> list:
    return [flag, *(f'{k}={cli_value(v)}' for k, v in opts.items())] if opts else []


def launch(args, name: str, test_args: list) -> list:
    """The command line of one tools/test.py run under the chosen launcher."""
    py = sys.executable
    if args.launcher == 'pytorch':
        return [py, '-m', 'torch.distributed.run', f'--nproc_per_node={args.gpus}',
                f'--master_port={args.port}', TEST_TOOL, *test_args, '--launcher', 'pytorch']
    if args.launcher == 'slurm':
        if not args.partition:
            sys.exit('error: --launcher slurm needs --partition NAME')
        per_node = min(args.gpus, 8)
        return ['srun', '-p', args.partition, f'--job-name=dag_{name}', f'--gres=gpu:{per_node}',
                f'--ntasks={args.gpus}', f'--ntasks-per-node={per_node}', '--cpus-per-task=5',
                '--kill-on-bad-exit=1', *args.srun_args.split(), py, '-u', TEST_TOOL,
                *test_args, '--launcher', 'slurm']
    return [py, TEST_TOOL, *test_args]


class Progress:
    """A bar over the images of the running model and one over the models,
    each with its ETA (rich), and a line per finished model."""

    def __init__(self, n_models: int):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn('{task.description:<34}'), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn('ETA'),
                             TimeRemainingColumn(), console=self.console, transient=False)
        self.models = self.bars.add_task('models', total=n_models)
        self.images = None

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc):
        self.bars.stop()

    def start_model(self, name: str):
        if self.images is not None:
            self.bars.remove_task(self.images)
        self.images = self.bars.add_task(f'  images of {name}'[:34], total=None)

    def update_images(self, done: int, total):
        self.bars.update(self.images, completed=done, total=total)

    def end_model(self):
        self.bars.advance(self.models)

    def line(self, text: str):
        self.bars.console.print(text, highlight=False, markup=False, soft_wrap=True)


def run_model(args, cmd: list, work_dir: str, prog: Progress) -> int:
    """Run one tools/test.py command; its output goes to work_dir/benchmark.log
    (and to the console with --verbose) while the bar follows its records."""
    from mmdag.benchmark.zoo_benchmark import RunProgress
    os.makedirs(work_dir, exist_ok=True)
    log_path = osp.join(work_dir, 'benchmark.log')
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
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
        with open(osp.join(work_dir, 'benchmark.log'), errors='replace') as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return 'no log'
    errors = [ln for ln in lines if ln.startswith('error:')]
    return (errors or lines or ['no output'])[-1][:300]


def summary_line(k: int, n: int, row: dict, wall: float, source: str = None) -> str:
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


def pictures(name: str, work_dir: str, out_dir: str) -> list:
    """Convergence plot, iteration histogram and one Figure-1 picture of a
    finished model, each made again only when the model's report is newer."""
    from mmdag.benchmark.plots import convergence_plot, iterations_histogram
    from mmdag.engine.records import NOT_ATTACKED, read_records, unique_records
    from mmdag.fileio import write_atomic
    made = []
    report = osp.join(work_dir, 'dag_report.json')
    with open(report) as f:
        rep = json.load(f)

    def stale(path):
        return not osp.isfile(path) or osp.getmtime(path) < osp.getmtime(report)

    conv = rep.get('convergence')
    path = osp.join(out_dir, f'{name}_convergence.png')
    if conv and stale(path):
        made.append(convergence_plot(conv, path, name))
    path = osp.join(out_dir, f'{name}_iterations.png')
    if stale(path):
        recs = unique_records(read_records(osp.join(work_dir, 'dag_records.jsonl'))[0])
        iters = [r['iters'] for r in recs if r.get('status') not in NOT_ATTACKED]
        if iters:
            max_iters = ((rep.get('settings') or {}).get('attack') or {}).get('max_iters')
            made.append(iterations_histogram(iters, path, max_iters, name))
    figs = sorted(glob.glob(osp.join(work_dir, 'figures', '*.png')))
    path = osp.join(out_dir, f'{name}_figure1.png')
    if figs and stale(path):
        with open(figs[0], 'rb') as f:
            write_atomic(path, f.read())
        made.append(path)
    return made


def run_options(args, entry) -> dict:
    """The benchmark-wide settings a model's run depends on."""
    return dict(num_figures=args.num_figures, transfer=bool(args.transfer),
                global_attack_options=args.attack_options, global_cfg_options=args.cfg_options,
                transfer_from=entry.get('transfer_from'),
                source_finished=entry.get('source_finished'))


def run_list(args, entries, bench_dir, prog):
    """Attack every entry (skip, resume or start); return {name: dict(row, ran)}."""
    from mmdag.benchmark.zoo_benchmark import (RANDOM, fingerprint, model_row, plan,
                                               random_checkpoint, read_entry, write_entry)
    from mmdag.engine.records import keep_aside
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
            kept = keep_aside(osp.join(wd, 'dag_report.json'), '.json')
            prog.line(f'[zoo] {k}/{n} {name}: settings changed since the run in {wd}: '
                      'attacking again' + (f' (earlier report kept as {kept})' if kept else ''))
        ckpt = e['checkpoint']
        if ckpt == RANDOM:   # one file per config content, cfg_options and seed
            key = hashlib.sha1(json.dumps([fp['config_sha1'], fp['cfg_options'], e['seed']],
                                          sort_keys=True).encode()).hexdigest()[:8]
            try:
                ckpt = random_checkpoint(e['config'], e['cfg_options'],
                                         osp.join(wd, f'random_weights_{key}.pth'), e['seed'])
            except Exception as err:   # a broken config: this model fails, the list goes on
                reason = f'cannot build {e["config"]} with random weights: ' \
                         f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
                prog.line(f'[zoo] {k}/{n} {name}: FAILED: {reason}')
                results[name] = dict(row=dict(model=name, failed=reason), ran=True)
                prog.end_model()
                continue
        attack = e.get('attack', 'dag')
        test_args = [e['config'], ckpt, '--work-dir', wd, '--attack', attack, '--num-figures',
                     '0' if e.get('transfer_from') or attack != 'dag' else str(args.num_figures)]
        if e.get('transfer_from'):
            test_args += ['--perturbations', e['transfer_from'], '--resize-perturbations']
        elif args.transfer and attack == 'dag':
            test_args.append('--save-perturbations')
        if what == 'resume':
            test_args.append('--resume')
        # --attack-options are DAG's; a worst-case run has its own (budget_options)
        test_args += options('--attack-options', {**e['attack_options'],
                                                  **(args.attack_options if attack == 'dag'
                                                     else {})})
        test_args += options('--cfg-options', {**e['cfg_options'], **args.cfg_options})
        prog.line(f'[zoo] {k}/{n} {name}: ' + ('resuming the killed run' if what == 'resume'
                                               else 'attacking') + f' (log: {wd}/benchmark.log)')
        started = time.time()
        write_entry(wd, dict(fingerprint=fp, status='running',
                             started_at=time.strftime('%Y-%m-%d %H:%M:%S %Z')))
        rc = run_model(args, launch(args, name, test_args), wd, prog)
        wall = time.time() - started
        if rc != 0:
            reason = failure_reason(wd)
            write_entry(wd, dict(fingerprint=fp, status='failed', reason=reason,
                                 wall_seconds=round(wall, 1)))
            prog.line(f'[zoo] {k}/{n} {name}: FAILED (exit {rc}): {reason}  '
                      f'(log: {wd}/benchmark.log)')
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


def budget_settings(args, list_path: str):
    """The budgeted attacks and their settings: ``--attacks`` (segmentors),
    ``--det-attacks`` (detectors) and ``--budget-options`` over the list's
    ``attacks``, ``det_attacks`` and ``budget_options``."""
    from mmengine.config import Config

    from mmdag.attacks import attack_types
    cfg = Config.fromfile(list_path)
    known = attack_types()
    chosen = []
    for flag, key in (('--attacks', 'attacks'), ('--det-attacks', 'det_attacks')):
        given = getattr(args, key)
        names = given if given is not None else list(cfg.get(key, None) or [])
        names = [] if names == ['none'] else [str(a).lower() for a in names]
        bad = [a for a in names if a not in known or a in ('dag', 'worstcase')]
        if bad:
            sys.exit(f'error: {flag} {bad}: budgeted attacks are '
                     + ', '.join(a for a in sorted(known) if a not in ('dag', 'worstcase')))
        chosen.append(names)
    budget = {**dict(cfg.get('budget_options', None) or {}), **args.budget_options}
    return chosen[0], chosen[1], budget


def budget_entries(entries, rows, bench_dir, attacks, det_attacks, budget):
    """One worst-case run per finished model, in ``DIR/<name>/attacks``,
    over ``attacks`` for a segmentor (mIoU) and ``det_attacks`` for a
    detector (each member's own figure comes with it)."""
    out = []
    for e in entries:
        metric = (rows.get(e['name']) or {}).get('metric')
        members = attacks if metric == 'mIoU' else det_attacks if metric == 'mAP' else []
        if not members:
            continue
        out.append(dict(e, name=f"{e['name']}.attacks", model=e['name'],
                        work_dir=osp.join(bench_dir, e['name'], 'attacks'), attack='worstcase',
                        attack_options={**budget, 'attacks': list(members)}))
    return out


def transfer_entries(entries, rows, bench_dir):
    """A transfer run per ordered pair of finished models of one task."""
    from mmdag.benchmark.zoo_benchmark import read_entry
    out = []
    task = {e['name']: (rows.get(e['name']) or {}).get('metric') for e in entries}
    for src in entries:
        for dst in entries:
            if src is dst or not task[src['name']] or task[src['name']] != task[dst['name']]:
                continue
            out.append(dict(dst, name=f"{src['name']}_on_{dst['name']}",
                            work_dir=osp.join(bench_dir, 'transfer',
                                              f"{src['name']}_on_{dst['name']}"),
                            transfer_from=osp.abspath(osp.join(bench_dir, src['name'],
                                                               'perturbations')),
                            source=src['name'], target=dst['name'],
                            source_finished=read_entry(osp.join(bench_dir, src['name']))
                            .get('finished_at')))
    return out


def transfer_table(entries, pairs, bench_dir):
    """The transfer matrix (drop ORIG - ADVR, in %) of the white-box runs and
    the transfer runs, labelled by list names."""
    from mmdag.summary import format_matrix, transfer_matrix
    reports, sources = {}, {}
    for e in entries:
        path = osp.join(bench_dir, e['name'], 'dag_report.json')
        if osp.isfile(path):
            rep = dict(json.load(open(path)), config=e['name'])
            reports[path] = rep
            sources[osp.normpath(osp.join(osp.abspath(bench_dir), e['name'],
                                          'perturbations'))] = rep
    for t in pairs:
        path = osp.join(t['work_dir'], 'dag_report.json')
        if osp.isfile(path):
            reports[path] = dict(json.load(open(path)), config=t['target'])
    rows, cols, cells = transfer_matrix(reports, sources)
    return format_matrix(rows, cols, cells), dict(
        rows=rows, cols=cols,
        cells=[dict(made_on=r, applied_to=c, drop=v) for (r, c), v in cells.items()])


def main(argv=None):
    args = parse_args(argv)
    from mmdag.benchmark.plots import variants_chart
    from mmdag.benchmark.zoo_benchmark import (budget_row, fingerprint, format_rows,
                                               load_model_list, model_row, plan, write_if_changed,
                                               write_tables)
    from mmdag.errors import MMDagError
    from mmdag.paths import resolve_config

    # relative paths (lists, configs, checkpoints, work dirs) are read from the
    # current directory; configs/... not found there are mmdag's own
    try:
        entries = load_model_list(resolve_config(args.list))
    except MMDagError as e:
        sys.exit(f'error: {e}')
    for e in entries:
        e['config'] = resolve_config(e['config'])
    attacks, det_attacks, budget = budget_settings(args, resolve_config(args.list))
    selected = entries
    if args.models:
        unknown = sorted(set(args.models) - {e['name'] for e in entries})
        if unknown:
            sys.exit(f'error: {unknown} not in {args.list}; its models: '
                     + ', '.join(e['name'] for e in entries))
        selected = [e for e in entries if e['name'] in args.models]
    bench_dir = args.work_dir or osp.join('work_dirs', 'zoo_benchmark',
                                          osp.splitext(osp.basename(args.list))[0])
    try:
        os.makedirs(bench_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f'error: cannot create {bench_dir} ({e.strerror}): pass --work-dir DIR '
                 'somewhere you can write')
    # the temporary files of a benchmark killed inside a write (its tables,
    # pictures, entry files); each model's run clears its own work dir likewise
    from mmdag.fileio import remove_temporaries
    transfer_dir = osp.join(bench_dir, 'transfer')
    removed = remove_temporaries(
        [bench_dir, osp.join(bench_dir, 'pictures')]
        + [osp.join(bench_dir, e['name']) for e in entries]
        + ([osp.join(transfer_dir, d) for d in os.listdir(transfer_dir)]
           if osp.isdir(transfer_dir) else []))
    if removed:
        print(f'[zoo] removed {removed} temporary files left by a killed benchmark')
    t0 = time.time()
    with Progress(len(selected)) as prog:
        results = run_list(args, selected, bench_dir, prog)
    ran = any(r['ran'] for r in results.values())
    # the tables cover the whole list: the models not selected (--models)
    # with their finished runs of these settings
    for e in entries:
        wd = osp.join(bench_dir, e['name'])
        if e['name'] not in results and plan(wd, fingerprint(e, run_options(args, e))) == 'skip':
            results[e['name']] = dict(row=model_row(e['name'], wd), ran=False)
    entries = [e for e in entries if e['name'] in results]
    rows = [results[e['name']]['row'] or dict(model=e['name'], failed='no report')
            for e in entries]
    meta = dict(list=args.list, attack_options=args.attack_options,
                cfg_options=args.cfg_options, launcher=args.launcher,
                processes=args.gpus if args.launcher != 'none' else 1)
    if attacks or det_attacks:
        good = {r['model']: r for r in rows if not r.get('failed')}
        runs = budget_entries([e for e in entries if e['name'] in good], good, bench_dir,
                              attacks, det_attacks, budget)
        # --models: the others' finished runs go in the tables, nothing of theirs is run
        todo = [b for b in runs if b['model'] in {e['name'] for e in selected}]
        bres = {}
        if todo:
            with Progress(len(todo)) as prog:
                bres = run_list(args, todo, bench_dir, prog)
            ran = ran or any(r['ran'] for r in bres.values())
        for row in rows:
            run = next((b for b in runs if b['model'] == row['model']), None)
            if run is None:
                continue
            got = (bres.get(run['name']) or {}).get('row') or {}
            if got.get('failed'):
                row['attacks'] = dict(failed=got['failed'])
            elif run in todo or plan(run['work_dir'], fingerprint(
                    run, run_options(args, run))) == 'skip':
                row['attacks'] = budget_row(run['work_dir'])
        meta.update(attacks=attacks, det_attacks=det_attacks, budget_options=budget)
    pic_dir = osp.join(bench_dir, 'pictures')
    for e, row in zip(entries, rows):
        if not row.get('failed'):
            pictures(e['name'], osp.join(bench_dir, e['name']), pic_dir)
    paths = write_tables(bench_dir, rows, meta)
    if paths['changed'] or not osp.isfile(osp.join(pic_dir, 'variants.png')):
        variants_chart(rows, osp.join(pic_dir, 'variants.png'))
    print('\n' + format_rows(rows))
    if args.transfer:
        good = {r['model']: r for r in rows if not r.get('failed')}
        pairs = transfer_entries([e for e in entries if e['name'] in good], good, bench_dir)
        if pairs:
            with Progress(len(pairs)) as prog:
                tres = run_list(args, pairs, bench_dir, prog)
            ran = ran or any(r['ran'] for r in tres.values())
            text, data = transfer_table([e for e in entries if e['name'] in good],
                                        [p for p in pairs
                                         if not tres[p['name']]['row'].get('failed')],
                                        bench_dir)
            write_if_changed(osp.join(bench_dir, 'transfer.md'),
                             'Transfer: drop ORIG - ADVR (%) of the model of the column under '
                             'the perturbations made on the model of the row.\n\n' + text + '\n')
            write_if_changed(osp.join(bench_dir, 'transfer.json'), json.dumps(data, indent=2)
                             + '\n')
            print('\nTransfer (ORIG - ADVR, %; rows: made on, columns: applied to)\n' + text)
        else:
            print('\n[zoo] --transfer: no two finished models of one task')
    failed = [r['model'] for r in rows if r.get('failed')]
    print(f'\n[zoo] {len(entries)} models: {len(entries) - len(failed)} with results'
          + (f', {len(failed)} failed ({", ".join(failed)})' if failed else '')
          + ('' if ran else '; nothing to run, every model finished earlier')
          + f'; {time.time() - t0:.0f} s')
    print(f"[zoo] tables: {paths['benchmark.md']}, .csv, .json; pictures: {pic_dir}/")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
