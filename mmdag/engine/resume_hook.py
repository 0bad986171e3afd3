"""AttackResumeHook: keep the state a killed run resumes from, and resume it."""
import os
import os.path as osp
import time
from typing import Optional

from mmengine.dist import barrier, broadcast_object_list, get_rank, is_main_process
from mmengine.hooks import Hook

from mmdag.contract import BatchAttack, RunAttack
from mmdag.errors import MMDagError
from mmdag.fileio import remove_temporaries, write_atomic
from mmdag.registry import HOOKS
from .perturbations import image_names
from .records import records_bytes, start_records
from .report_hook import AttackReportHook
from .resume import (StateTypeError, read_state, remaining_loader, start_state, state_dir,
                     upgrade_work_dir, write_batch)
from .run_settings import check_settings, checkpoint_settings, config_settings, write_settings
from .wiring import all_metrics, attack_metrics, published


@HOOKS.register_module()
class AttackResumeHook(Hook):
    """Keep ``<work_dir>/attack_state`` after every batch, and continue a killed
    run from it (:mod:`mmdag.engine.resume`).

    A new run sets the earlier files aside; a resumed one checks that its
    settings are those of the run it continues, restores the finished
    images into the metrics and leaves the rest to the test loop (its
    dataloader is narrowed to them). After every batch the batch's state is
    written: each image's name, index, record and per-image metric results.
    The attack hook's settings and each batch's records come through the
    runner's message hub.

    Why a hook and not a test loop: the state is kept in every run (any run
    may be killed), and a config built on a zoo config cannot set
    ``test_cfg`` from an mmdag ``_base_`` fragment (mmengine refuses a key
    defined by two bases), so a loop of mmdag's would not be the loop of
    the stock tools' runs.

    Args:
        resume (bool): continue the killed run of this work dir; refused when
            it had other settings. Defaults to False: a new run (an earlier
            state is kept aside under a dated name).
    """

    priority = 'LOWEST'   # after the attack hook, whose settings it reads

    def __init__(self, resume: bool = False) -> None:
        self.resume = bool(resume)
        self._index: dict = {}
        self._counts: list = []
        self._state_ok = True
        self._run_id = ''

    def before_test(self, runner) -> None:
        self._start_or_resume(runner)

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # what the metrics hold before this batch: the batch's results follow
        self._counts = [{k: len(v) for k, v in m.result_lists().items()}
                        for m in attack_metrics(runner)]

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # written once the batch's metrics are processed: a state entry is a
        # finished image
        batch = published(runner.message_hub, BatchAttack)
        if batch and batch.records and self._state_ok:
            self._save_state(runner, batch_idx, batch.names, batch.records)

    def _records_path(self, runner) -> Optional[str]:
        """The records file of the run's report hook (a resumed run rewrites it)."""
        hook = next((h for h in getattr(runner, 'hooks', ()) if isinstance(h, AttackReportHook)),
                    None)
        return hook.records_path(runner) if hook is not None else None

    def _settings(self, runner) -> dict:
        """What a resumed run must share with the run it continues: the
        attack hook's settings, the images, the metrics, the parts of the
        resolved config that decide the numbers (:data:`CONFIG_PARTS`) and the
        checkpoint's content (hashed on rank 0 only). Called on every rank."""
        cfg = runner.cfg
        load_from = cfg.get('load_from', None) if hasattr(cfg, 'get') else None
        checkpoint = [checkpoint_settings(load_from) if is_main_process() else None]
        broadcast_object_list(checkpoint)
        metrics = all_metrics(runner)
        run = published(runner.message_hub, RunAttack)
        attack = run.state if run is not None else None
        if attack is None:
            raise MMDagError('AttackResumeHook needs an AttackHook in the config: add '
                             "dict(type='mmdag.AttackHook') to custom_hooks")
        return dict(**attack,
                    checkpoint=checkpoint[0],
                    images=sorted(self._index),
                    metrics=[type(m).__name__ for m in metrics],
                    **(config_settings(cfg, metrics) if hasattr(cfg, 'get') else {}))

    def _start_or_resume(self, runner) -> None:
        work_dir = runner.work_dir
        dataset = getattr(runner.test_dataloader, 'dataset', None)
        names = image_names(dataset) if dataset is not None else []
        self._index = {n: i for i, n in enumerate(names)}
        self._run_id = f'{time.strftime("%Y%m%d%H%M%S")}-{os.getpid()}'
        metrics = all_metrics(runner)
        metrics_of_attack = attack_metrics(runner)
        self._state_ok = (dataset is not None and len(self._index) == len(names)
                          and len(metrics_of_attack) == len(metrics) > 0)
        # the same on every rank: the settings' checkpoint hash is a collective
        settings = self._settings(runner) if self._state_ok else None
        records_path = self._records_path(runner)
        if not self.resume:
            if is_main_process():
                _remove_temporaries(runner)
                for kept in (start_records(records_path) if records_path else None,
                             start_state(work_dir)):
                    if kept:
                        runner.logger.info(f'mmdag: the files of an earlier run kept as {kept}')
                if self._state_ok:
                    write_settings(work_dir, settings)
            barrier()   # no rank writes before the old files are aside
            return
        if not self._state_ok:
            raise MMDagError('cannot resume: every test metric must be wrapped in AttackMetric and '
                             'every test image name must be unique; rerun without --resume')
        if is_main_process():
            for path in upgrade_work_dir(work_dir, records_path):
                runner.logger.info(f'mmdag: {path} renamed from its name before mmdag 0.2')
        barrier()   # every rank reads the state under its name of today
        check_settings(work_dir, settings)
        done, bad = read_state(work_dir)
        done = {n: e for n, e in done.items() if n in self._index}
        remaining = [i for i, n in enumerate(names) if n not in done]
        barrier()   # every rank has read the state before it changes
        if is_main_process():
            _remove_temporaries(runner)
            write_settings(work_dir, settings)
            if records_path:
                _rewrite_records(records_path, done)
            runner.logger.info(
                f'mmdag: resuming: {len(done)} of {len(names)} images done by the earlier run, '
                f'{len(remaining)} to go'
                + (f' ({bad} unreadable state files skipped)' if bad else ''))
        for j, m in enumerate(metrics_of_attack):
            restored = {key: [(e['index'], e['results'][j][key]) for e in done.values()]
                        for key in m.result_lists()}
            m.restore(restored, remaining)
        runner.test_loop.dataloader = remaining_loader(runner.test_loop.dataloader, remaining)
        barrier()

    def _save_state(self, runner, batch_idx: int, names: list, records: list) -> None:
        n = len(records)
        per_metric = []
        for m, before in zip(attack_metrics(runner), self._counts):
            lists = m.result_lists()
            if any(len(v) - before.get(k, 0) != n for k, v in lists.items()):
                # a metric that keeps other than one result per image: no resume
                runner.logger.warning('mmdag: a metric does not keep one result per image; '
                                      'this run cannot be resumed')
                self._state_ok = False
                return
            per_metric.append({k: v[len(v) - n:] for k, v in lists.items()})
        entries = [dict(name=name, index=self._index[name], record=rec,
                        results=[{k: v[k_] for k, v in pm.items()} for pm in per_metric])
                   for k_, (name, rec) in enumerate(zip(names, records))]
        try:
            write_batch(runner.work_dir, get_rank(), batch_idx, self._run_id, entries)
        except StateTypeError as e:
            # a metric keeping, e.g., its own objects: no resume (state files are data only)
            runner.logger.warning(f'mmdag: a per-image result the resume state cannot hold '
                                  f'({e}); this run cannot be resumed')
            self._state_ok = False


def _remove_temporaries(runner) -> None:
    """The temporary files of writers killed in an earlier run (a SIGKILL
    runs no cleanup): called on rank 0 before the barrier that every rank
    passes before it writes."""
    work_dir = runner.work_dir
    n = remove_temporaries([work_dir, state_dir(work_dir), osp.join(work_dir, 'perturbations'),
                            osp.join(work_dir, 'figures')])
    if n:
        runner.logger.info(f'mmdag: removed {n} temporary files left by a killed run')


def _rewrite_records(path: str, done: dict) -> None:
    """The records file of a resumed run: exactly the finished images'
    records, in test-set order (a cut line of the killed run is dropped)."""
    records = [e['record'] for e in sorted(done.values(), key=lambda e: e['index'])
               if e.get('record')]
    if records:
        write_atomic(path, records_bytes(records))
    elif osp.exists(path):
        os.remove(path)
