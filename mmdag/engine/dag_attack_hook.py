"""DAGAttackHook: attack every test batch before the model sees it."""
import json
import os
import os.path as osp
import time
from typing import Optional, Sequence

import numpy as np

from mmengine.dist import get_rank, get_world_size, is_main_process
from mmengine.hooks import Hook, LoggerHook
from mmengine.runner.amp import autocast
from mmengine.structures import BaseDataElement

from mmdag.attacks import Replay
from mmdag.compat import repair_stock_model
from mmdag.contract import (EXTRA_VARIANTS, PRED_FIELDS, STATS_FIELD, VARIANTS_FIELD, image_name,
                            unwrap)
from mmdag.errors import MMDagError
from mmdag.fileio import write_atomic
from mmdag.registry import HOOKS, build_attack
from mmdag.targets import find_adapter
from mmdag.targets.batching import grouped_test_step, install_grouped_test_step

from .figures import save_figure
from .perturbations import image_names, load_perturbation, perturbation_name, save_perturbation
from .records import RECORDS, append_records, convergence, make_records, read_records, unique_records
from .resume import ResumableState, _dag_metrics
from .step import attack_batch, perm_images


def _pred_fields(sample) -> dict:
    out = {}
    for k in PRED_FIELDS:
        if k in sample:
            v = sample.get(k)
            out[k] = v.to_dict() if isinstance(v, BaseDataElement) else v
    return out


@HOOKS.register_module()
class DAGAttackHook(ResumableState, Hook):
    """Replace each test batch by its DAG adversarial version.

    Before every test iteration the hook builds the batch's targets, runs DAG
    (under ``torch.enable_grad()``: the test loop runs under ``no_grad``) and
    puts the adversarial images into ``data_batch['inputs']``, so the stock
    ``test_step`` and metric see ADVR. For each name in ``variants`` it also
    runs ``test_step`` on the clean (``orig``) and spatially permuted
    (``perm``) images and attaches those predictions and the attack statistics
    to the data samples, where :class:`mmdag.evaluation.DAGMetric` reads them.
    After the epoch the main process writes ``<work_dir>/dag_report.json``.

    Args:
        attack (dict): the attack, built from the ``ATTACKS`` registry:
            ``type`` (default ``'DAG'``) and its arguments, here those of
            :class:`mmdag.attacks.DAG` (gamma on the
            0..255 scale, max_iters, adv_labels, stop_fraction, epsilon,
            quantize, seed). Defaults to the paper's settings.
        targets (dict): arguments of the target adapter (e.g.
            ``use_gt=False``). Defaults to {}.
        variants (Sequence[str]): extra predictions to make, out of
            ``('orig', 'perm')``. Defaults to both.
        perm_seed (int): seed of the PERM pixel permutation. Defaults to 0.
        num_figures (int): Figure-1-style pictures to save under
            ``<work_dir>/figures`` (the first images of each rank, shared
            out between the ranks). Defaults to 0.
        report (str, optional): report file name in the work dir; None
            writes none. Defaults to 'dag_report.json'.
        save_perturbations (bool): write every image's perturbation to
            ``<work_dir>/perturbations/<image name>.npz`` (see
            :mod:`mmdag.engine.perturbations`), for transfer studies.
            Defaults to False.
        perturbations (str | list[str], optional): transfer mode: instead
            of attacking, add the perturbations saved in this directory (by a
            run with ``save_perturbations=True``, e.g. on another model;
            resized when the input frames differ) and report ORIG / ADVR /
            PERM and the statistics on this model. Several directories add
            their perturbations (the paper's ``r_A + r_B``). Defaults to None
            (attack). Before the first batch the hook checks that every test
            image has a file in each directory.
        resize_perturbations (bool): transfer: resize (bilinear) a saved
            perturbation whose input frame differs from this model's (another
            pipeline scale or padding); refused otherwise. Defaults to False.
        attack_autocast (bool): run the attack's forwards and backwards
            under mixed precision (mmengine's ``autocast``: float16 on CUDA,
            bfloat16 on the CPU). Defaults to False: the attack's logits and
            gradients are float32.
        records (str, optional): per-image records file in the work dir,
            one JSON line per image, appended after every batch by every
            rank (see :mod:`mmdag.engine.records`); a file left by an
            earlier run is kept under a dated name. The report's
            ``convergence`` is drawn from it. None writes none.
            Defaults to 'dag_records.jsonl'.
        resume (bool): continue a run of this work dir that was killed:
            the images it finished (``<work_dir>/dag_state``, see
            :mod:`mmdag.engine.resume`) are not attacked again, and the
            report equals that of an uninterrupted run. Refused when the
            saved run had other settings. Defaults to False: a new run
            (an earlier state is kept aside under a dated name).
        log_interval (int, optional): log the attack's summary every this
            many batches (and at the last). Defaults to None: the interval
            of the runner's ``LoggerHook`` (1 without one).

    Batches and precision: every forward of an image (targets, attack, ORIG,
    ADVR, PERM) is made at the image's own padded canvas, images of equal
    canvas together (:mod:`mmdag.targets.batching`); the hook makes the test
    loop's ``test_step`` do the same while it is active. So an image's
    numbers do not depend on its batch companions, and a batch may mix image
    sizes even for mmseg. ORIG and PERM are predicted under the same
    precision as the loop's ADVR prediction (``test_loop.fp16``).
    """

    priority = 'VERY_LOW'  # after every other before_test_iter hook

    def __init__(self,
                 attack: Optional[dict] = None,
                 targets: Optional[dict] = None,
                 variants: Sequence[str] = ('orig', 'perm'),
                 perm_seed: int = 0,
                 num_figures: int = 0,
                 report: Optional[str] = 'dag_report.json',
                 save_perturbations: bool = False,
                 perturbations=None,
                 resize_perturbations: bool = False,
                 attack_autocast: bool = False,
                 records: Optional[str] = RECORDS,
                 resume: bool = False,
                 log_interval: Optional[int] = None) -> None:
        unknown = set(variants) - set(EXTRA_VARIANTS)
        if unknown:
            raise ValueError(f'unknown variants {sorted(unknown)}; the hook makes orig and perm')
        self.attack_cfg = dict(attack or {})
        self.dag = build_attack(self.attack_cfg)
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        self.perturbations = list(perturbations) if perturbations else None
        #: what each batch runs: the attack, or the replay of saved perturbations
        self.attack = self.dag if self.perturbations is None else Replay(self.dag)
        self.targets_cfg = dict(targets or {})
        self.variants = tuple(variants)
        self.perm_seed = perm_seed
        self.num_figures = num_figures
        self.report = report
        self._figures_left = num_figures
        self._figure_batch: Optional[dict] = None
        self._target_settings: Optional[dict] = None
        self.save_perturbations = save_perturbations
        self.resize_perturbations = bool(resize_perturbations)
        self._frame: dict = {}
        self.attack_autocast = bool(attack_autocast)
        self._fp16 = False
        self._environment: dict = {}
        self._restore_test_step = None
        self.records = records
        self.log_interval = log_interval
        self._interval = 1
        self._pending: list = []
        self.resume = bool(resume)
        self._names: list = []
        self._index: dict = {}
        self._counts: list = []
        self._state_ok = True
        self._run_id = ''

    def _records_path(self, runner) -> Optional[str]:
        return osp.join(runner.work_dir, self.records) if self.records else None

    def before_test(self, runner) -> None:
        model = unwrap(runner.model)
        # fail before the first batch if no adapter fits the model
        find_adapter(model)
        repair_stock_model(model)
        # the loop's ADVR forward, like every other, one canvas group at a time
        self._restore_test_step = install_grouped_test_step(model)
        self._fp16 = bool(getattr(runner.test_loop, 'fp16', False))
        self._environment = _environment(model)
        self._frame = _pipeline_frame(runner)
        self._preflight(runner)
        self._interval = self.log_interval or next(
            (h.interval for h in getattr(runner, 'hooks', ()) if isinstance(h, LoggerHook)), 1)
        wanted = self.num_figures
        if self.resume and wanted > 0:   # the killed run's pictures count (read before
            d = osp.join(runner.work_dir, 'figures')   # the barriers of the resume)
            wanted = max(0, wanted - (len([f for f in os.listdir(d) if f.endswith('.png')])
                                      if osp.isdir(d) else 0))
        self._start_or_resume(runner)
        # every rank draws its share of the pictures from its own images
        world = get_world_size()
        self._figures_left = -(-wanted // world)
        if get_rank() == world - 1:   # the total stays num_figures
            self._figures_left = max(0, wanted - (world - 1) * self._figures_left)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        if data_batch is None:
            return
        model = unwrap(runner.model)
        clean = list(data_batch['inputs'])
        samples = data_batch['data_samples']
        t0 = time.perf_counter()
        # transfer is an attack too: it replays the saved perturbations
        replayed = {} if self.perturbations is None else dict(perturbations=[
            sum(load_perturbation(d, s, tuple(x.shape), k, resize=self.resize_perturbations,
                                  channel_order=self._frame['channel_order'])
                for d in self.perturbations)
            for k, (s, x) in enumerate(zip(samples, clean))])
        result, targets = attack_batch(model, data_batch, self.attack, self.targets_cfg,
                                       autocast=self.attack_autocast, **replayed)
        seconds = time.perf_counter() - t0
        self._names = [perturbation_name(s, k) for k, s in enumerate(samples)]
        self._pending = make_records(self._names, [s.metainfo.get('img_path') for s in samples],
                                     result.stats, seconds, get_rank(), batch_idx)
        # what the metrics hold before this batch: the batch's results follow
        self._counts = [{k: len(v) for k, v in m.result_lists().items()}
                        for m in _dag_metrics(runner)]
        if self.save_perturbations:
            for k, (s, r) in enumerate(zip(samples, result.perturbations)):
                save_perturbation(osp.join(runner.work_dir, 'perturbations'), s, r, k,
                                  frame=self._frame)
        self._target_settings = dict(adapter=type(targets).__name__,
                                     **getattr(targets, 'settings', {}))
        extra = {}
        if 'orig' in self.variants:
            extra['orig'] = self._predict(model, clean, samples)
        if 'perm' in self.variants:
            perm = perm_images(clean, result.perturbations, samples, self.perm_seed,
                               self.dag.clip_range)
            extra['perm'] = self._predict(model, perm, samples)
        for k, s in enumerate(samples):
            s.set_field(result.stats[k], STATS_FIELD)
            s.set_field({v: extra[v][k] for v in extra}, VARIANTS_FIELD)
        total = len(runner.test_dataloader) if hasattr(runner.test_dataloader, '__len__') else None
        if (batch_idx + 1) % self._interval == 0 or batch_idx + 1 == total:
            self._log_progress(runner, batch_idx, result.stats, total)
        adv = [x.to(c.device) for x, c in zip(result.adv_images, clean)]
        data_batch['inputs'] = adv
        if self._figures_left > 0:
            # drawn once the loop has predicted the adversarial images
            n = min(self._figures_left, len(clean))
            self._figures_left -= n
            self._figure_batch = dict(clean=clean[:n], result=result, samples=samples[:n],
                                      orig=extra.get('orig'))

    def _preflight(self, runner) -> None:
        """What would otherwise fail only when its batch arrives, hours in:
        output directories that cannot be written, test images without a
        saved perturbation."""
        outputs = []
        if self.num_figures > 0:
            outputs.append(('figures', '--num-figures 0 (num_figures=0)'))
        if self.save_perturbations:
            outputs.append(('perturbations', 'no --save-perturbations'))
        for sub, instead in outputs:
            d = osp.join(runner.work_dir, sub)
            try:
                os.makedirs(d, exist_ok=True)
                probe = osp.join(d, f'.write_probe_{os.getpid()}')
                with open(probe, 'w') as f:
                    f.write('ok')
                os.remove(probe)
            except OSError as e:
                why = 'a file is in the way' if osp.isfile(d) else e.strerror
                raise MMDagError(f'cannot write to {d} ({why}): pass a --work-dir you '
                                 f'can write, or run with {instead}') from None
        if not self.perturbations:
            return
        for d in self.perturbations:
            if not osp.isdir(d):
                raise MMDagError(f'perturbation directory {d} not found: pass the '
                                 '<work_dir>/perturbations of a run with save_perturbations=True')
        dataset = runner.test_dataloader.dataset
        for d in self.perturbations:
            missing = [n for n in image_names(dataset)
                       if not osp.isfile(osp.join(d, n + '.npz'))]
            if missing:
                raise MMDagError(
                    f'{len(missing)} of the {len(dataset)} test images have no saved perturbation '
                    f'in {d} (e.g. {missing[0]}): save the perturbations on the same test set '
                    '(--save-perturbations), or check the directory')

    @staticmethod
    def _log_progress(runner, batch_idx: int, stats: list, total: Optional[int]) -> None:
        n = len(stats)
        runner.logger.info(
            f"DAG batch {batch_idx + 1}/{'?' if total is None else total}: {n} images, "
            f"iters {sum(s['iters'] for s in stats) / n:.1f}, "
            f"L-inf {sum(s['linf'] for s in stats) / n:.2f}, "
            f"targets still correct {100 * sum(s['correct_frac'] for s in stats) / n:.1f}%")

    def _predict(self, model, images, samples) -> list:
        """Predictions as the test loop makes them: canvas groups, and the
        loop's precision (``test_loop.fp16``)."""
        copies = [s.clone() for s in samples]
        with autocast(enabled=self._fp16):
            outs = grouped_test_step(model, dict(inputs=list(images), data_samples=copies))
        return [_pred_fields(o) for o in outs]

    def _save_figures(self, runner, outputs) -> None:
        """The batch's first pictures, with the adversarial predictions the
        test loop made (``outputs``): no forward of their own."""
        fig, self._figure_batch = self._figure_batch, None
        clean, result, samples = fig['clean'], fig['result'], fig['samples']
        orig = fig['orig'] or [None] * len(clean)
        meta = runner.test_dataloader.dataset.metainfo
        palette, classes = meta.get('palette'), meta.get('classes')
        visualizer = getattr(runner, 'visualizer', None)
        for k in range(len(clean)):
            name = image_name(samples[k], k)
            row = save_figure(osp.join(runner.work_dir, 'figures', f'{name}.png'), clean[k],
                              result.perturbations[k], result.adv_images[k], orig[k],
                              _pred_fields(outputs[k]), palette, result.stats[k],
                              samples[k].metainfo.get('scale_factor'), classes, visualizer)
            if visualizer is not None:   # the config's vis_backends (TensorBoard, WandB...)
                visualizer.add_image(f'dag_figure_{name}', np.ascontiguousarray(row[..., ::-1]))

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._figure_batch is not None and outputs is not None:
            self._save_figures(runner, outputs)
        # written once the batch's metrics are processed: a record (and a
        # state entry) is a finished image
        if self._pending and self._state_ok:
            self._save_state(runner, batch_idx)
        path = self._records_path(runner)
        if path and self._pending:
            append_records(path, self._pending)
        self._pending = []

    def after_test(self, runner) -> None:
        if self._restore_test_step is not None:
            self._restore_test_step()
            self._restore_test_step = None

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if not self.report or not is_main_process():
            return
        metrics = metrics or {}
        variants, attack = {}, {}
        for key, value in metrics.items():
            head, _, name = key.partition('/')
            if head in ('orig', 'advr', 'perm') and name:
                variants.setdefault(head, {})[name] = value
            elif head == 'dag' and name:
                attack[name] = value
        report = dict(
            variants=variants,
            attack=attack,
            counted=('iters, p, linf, success and target_success: means over the images with '
                     'at least one target correct on the clean image and finite logits; '
                     'target_success and success count only the targets correct on the clean '
                     'image (no_targets, none_correct and non_finite images are counted apart)'),
            settings=dict(attack=self.dag.settings(),
                          targets=self._target_settings or self.targets_cfg,
                          perm_seed=self.perm_seed,
                          transfer_from=self.perturbations,
                          attack_autocast=self.attack_autocast,
                          test_fp16=self._fp16),
            environment=self._environment,
            config=getattr(runner.cfg, 'filename', None),
            checkpoint=runner.cfg.get('load_from'),
            checkpoint_fit=runner.message_hub.get_info('mmdag_checkpoint_fit'),
            metrics=metrics)
        records_path = self._records_path(runner)
        if records_path:
            lines, skipped = read_records(records_path)
            records = unique_records(lines)
            report['convergence'] = convergence(records)
            report['records'] = dict(file=self.records, images=len(records),
                                     skipped_lines=skipped)
        path = osp.join(runner.work_dir, self.report)
        write_atomic(path, json.dumps(report, indent=2, default=_jsonable))
        runner.logger.info(f'DAG report written to {path}')


def _pipeline_frame(runner) -> dict:
    """Channel order of the loaded image and the ``Resize`` scale of the
    test pipeline, recorded with each saved perturbation."""
    frame = dict(channel_order='bgr', scale='')
    try:
        pipeline = runner.cfg.test_dataloader.dataset.get('pipeline', None) or []
    except AttributeError:
        pipeline = []
    for t in pipeline:
        kind = str(t.get('type', ''))
        if kind.startswith('Load') and 'Image' in kind and t.get('channel_order'):
            frame['channel_order'] = str(t['channel_order'])
        if 'Resize' in kind and not frame['scale']:
            frame['scale'] = str(t.get('scale', t.get('scale_factor', '')))
    return frame


def _environment(model) -> dict:
    """Where the numbers were measured: device, world size and versions."""
    import torch

    import mmdag
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    # the float results of a long attack reproduce bitwise only for the same
    # world size and threads per process (summation order): both are recorded
    env = dict(device=str(device), world_size=get_world_size(), threads=torch.get_num_threads(),
               torch=torch.__version__, cuda=torch.version.cuda, mmdag=mmdag.__version__)
    if device.type == 'cuda':
        env['device_name'] = torch.cuda.get_device_name(device)
    for pkg in ('mmengine', 'mmcv', 'mmdet', 'mmseg'):
        try:
            env[pkg] = __import__(pkg).__version__
        except ImportError:
            pass
    return env


def _jsonable(obj):
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    return str(obj)
