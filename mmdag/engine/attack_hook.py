"""AttackHook: attack every test batch before the model sees it."""
import os.path as osp
import time
from typing import Optional, Sequence

from mmengine.dist import get_rank
from mmengine.hooks import Hook, LoggerHook
from mmengine.runner.amp import autocast

from mmdag.attacks import Replay, WorstCase, budget_of, build_attack, build_sweep
from mmdag.compat import repair_stock_model
from mmdag.contract import (EXTRA_VARIANTS, STATS_FIELD, SWEEP_STATS_FIELD, VARIANTS_FIELD,
                            BatchAttack, RunAttack, epsilon_label, image_name, pred_fields, swept,
                            unwrap)
from mmdag.errors import MMDagError
from mmdag.registry import HOOKS
from mmdag.targets import find_adapter
from mmdag.targets.batching import grouped_test_step, install_grouped_test_step
from .early_checks import check_saved_perturbations, check_writable
from .figure_hook import AttackFigureHook
from .perturbations import load_perturbation, save_perturbation
from .records import make_records
from .report_hook import AttackReportHook
from .resume_hook import AttackResumeHook
from .run_info import environment, pipeline_frame
from .step import attack_batch
from .variants import variant_images, variant_names
from .wiring import attack_metrics, clear, publish

#: The default of the settings that belong to the companion hooks
#: (``num_figures``, ``report``, ``records``, ``resume``): theirs.
FROM_HOOKS = 'from the hooks'


@HOOKS.register_module()
class AttackHook(Hook):
    """Replace each test batch by its adversarial version (any registered attack).

    Before every test iteration the hook builds the batch's targets, runs the attack
    (under ``torch.enable_grad()``: the test loop runs under ``no_grad``) and
    puts the adversarial images into ``data_batch['inputs']``, so the stock
    ``test_step`` and metric see ADVR. For each name in ``variants`` it also
    runs ``test_step`` on the clean (``orig``) and spatially permuted
    (``perm``) images and attaches those predictions and the attack statistics
    to the data samples, where :class:`mmdag.evaluation.AttackMetric` reads them.

    One job per hook: this one attacks (or replays saved perturbations) and
    predicts ORIG and PERM. The pictures are
    :class:`~mmdag.engine.AttackFigureHook`'s, the records and the report
    :class:`~mmdag.engine.AttackReportHook`'s, the state a killed run resumes
    from :class:`~mmdag.engine.AttackResumeHook`'s; they read the batch's
    attack from the runner's message hub (:mod:`mmdag.engine.wiring`).
    :func:`mmdag.apis.add_attack_to_config` and mmdag's configs list them
    all in ``custom_hooks``. For a config that lists only this hook, it adds
    them itself (the report and resume hooks always, the figure hook when
    ``num_figures`` > 0); ``num_figures``, ``report``, ``records`` and
    ``resume``, when given here, are passed on to them (so that
    ``--cfg-options custom_hooks.0.num_figures=0`` works on any config).

    Args:
        attack (dict): the attack, built from the ``ATTACKS`` registry:
            ``type`` (default ``'DAG'``) and its arguments, here those of
            :class:`mmdag.attacks.DAG` (gamma on the
            0..255 scale, max_iters, adv_labels, stop_fraction, epsilon,
            quantize, seed). Defaults to the paper's settings.
        targets (dict): arguments of the target adapter (e.g.
            ``use_gt=False``). Defaults to {}.
        variants (Sequence[str]): extra predictions to make, out of
            ``('orig', 'perm', 'advr_uint8')``; ``advr_uint8`` is ADVR
            rounded to 8 bits inside the budget (what an image file can
            hold: the deployable figure beside the float one). Defaults to
            all three.
        epsilons (Sequence[float], optional): an epsilon sweep in one run:
            the attack runs at each of these budgets (0..255 scale; its
            ``epsilon`` is set to each, a ``WorstCase``'s members share it),
            each from the clean image on the same targets, as a run at that
            epsilon alone would. The largest epsilon is what the loop
            predicts (the unmarked ``advr`` keys, the pictures, the records'
            top-level statistics); every other adds ``advr@<eps>``,
            ``perm@<eps>``, ``advr_uint8@<eps>`` and ``attack@<eps>``
            metric keys, a ``sweep`` entry in each record, and with
            ``save_perturbations`` a ``perturbations@<eps>`` directory. The
            report holds the curve (a table and ``attack_curve.png``). Defaults
            to None (one run at the attack's own budget). With a
            ``WorstCase`` attack, each member's own images are predicted too
            (at every epsilon): ``advr[PGD]/mIoU``... beside the worst
            case's ``advr/mIoU``, one forward per member and image.
        perm_seed (int): seed of the PERM pixel permutation. Defaults to 0.
        num_figures (int, optional): Figure-1-style pictures to save under
            ``<work_dir>/figures`` (the first images of each rank, shared
            out between the ranks), by the :class:`AttackFigureHook`.
            Defaults to :data:`FROM_HOOKS`: the figure hook's (none without one).
        report (str, optional): report file name in the work dir, written
            by the :class:`AttackReportHook`; None writes none. Defaults to
            :data:`FROM_HOOKS`: the report hook's ('attack_report.json').
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
            ``convergence`` is drawn from it; the report hook writes it.
            None writes none. Defaults to :data:`FROM_HOOKS`: the report
            hook's ('attack_records.jsonl').
        resume (bool, optional): continue a run of this work dir that was killed:
            the images it finished (``<work_dir>/attack_state``, see
            :mod:`mmdag.engine.resume`) are not attacked again, and the
            report equals that of an uninterrupted run. Refused when the
            saved run had other settings (:class:`AttackResumeHook`; every
            run keeps its state). Defaults to :data:`FROM_HOOKS`: the resume
            hook's (False: a new run, an earlier state kept aside under a
            dated name).
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
                 variants: Sequence[str] = EXTRA_VARIANTS,
                 epsilons: Optional[Sequence[float]] = None,
                 perm_seed: int = 0,
                 num_figures: Optional[int] = FROM_HOOKS,
                 report: Optional[str] = FROM_HOOKS,
                 save_perturbations: bool = False,
                 perturbations=None,
                 resize_perturbations: bool = False,
                 attack_autocast: bool = False,
                 records: Optional[str] = FROM_HOOKS,
                 resume: Optional[bool] = FROM_HOOKS,
                 log_interval: Optional[int] = None) -> None:
        unknown = set(variants) - set(EXTRA_VARIANTS)
        if unknown:
            raise ValueError(f'unknown variants {sorted(unknown)}; the hook makes '
                             f'{list(EXTRA_VARIANTS)}')
        self.attack_cfg = dict(attack or {})
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        self.perturbations = list(perturbations) if perturbations else None
        if epsilons is not None and self.perturbations:
            raise MMDagError('epsilons (a sweep) and perturbations (transfer) do not go '
                             'together: transfer the saved perturbations of one epsilon')
        #: the sweep's attacks, one per epsilon (None: no sweep)
        self.sweep = None if epsilons is None else build_sweep(self.attack_cfg, epsilons)
        #: the attack (at the largest epsilon of a sweep)
        self.primary = build_attack(self.attack_cfg) if self.sweep is None else self.sweep.primary
        #: what each batch runs: the attack, the sweep, or the replay of saved perturbations
        self.attack = (Replay(self.primary) if self.perturbations is not None
                       else self.sweep or self.primary)
        self.targets_cfg = dict(targets or {})
        self.variants = tuple(variants)
        self.perm_seed = perm_seed
        self.num_figures = num_figures
        self.report = report
        self.records = records
        self.save_perturbations = save_perturbations
        self.resize_perturbations = bool(resize_perturbations)
        self.attack_autocast = bool(attack_autocast)
        self.resume = resume
        self.log_interval = log_interval
        self._interval = 1
        self._frame: dict = {}
        self._fp16 = False
        self._restore_test_step = None
        self._run: Optional[RunAttack] = None

    def before_run(self, runner) -> None:
        # the companions of a config that lists only this hook (same
        # priority: they come after this hook, and run this before_run too),
        # and the settings given here passed on to them
        have = {type(h): h for h in runner.hooks}
        given = {k: getattr(self, k) for k in ('num_figures', 'report', 'records', 'resume')
                 if getattr(self, k) != FROM_HOOKS}
        for kind, keys in ((AttackFigureHook, ('num_figures',)),
                           (AttackReportHook, ('report', 'records')),
                           (AttackResumeHook, ('resume',))):
            options = {k: given[k] for k in keys if k in given}
            hook = have.get(kind)
            if hook is not None:
                for k, v in options.items():
                    setattr(hook, k, (int(v) if k == 'num_figures'
                                      else bool(v) if k == 'resume' else v))
            elif kind is not AttackFigureHook or options.get('num_figures'):
                runner.register_hook(kind(**options))

    @property
    def other_epsilons(self) -> list:
        """The epsilons of the sweep but the largest (none without a sweep)."""
        return [] if self.sweep is None else self.sweep.epsilons[:-1]

    def made_variants(self) -> list:
        """The variants this hook's run predicts: ``advr`` (the loop's), the
        extra ``variants``, and at each other epsilon of a sweep its swept
        ones (``advr@0.5``...)."""
        return variant_names(self.variants, self.other_epsilons, self.members)

    @property
    def members(self) -> list:
        """The member names of an ensemble attack (a worst case), whose own
        adversarial images are predicted too (``advr[<name>]``)."""
        if self.perturbations is None and isinstance(self.primary, WorstCase):
            return list(self.primary.names)
        return []

    def state_settings(self) -> dict:
        """This hook's part of the settings a resumed run must share."""
        attack = self.primary.settings() if self.sweep is None else self.sweep.settings()
        return dict(attack=attack, targets=self.targets_cfg,
                    variants=list(self.variants), perm_seed=self.perm_seed,
                    transfer_from=self.perturbations, resize=self.resize_perturbations,
                    attack_autocast=self.attack_autocast, test_fp16=self._fp16)

    def before_test(self, runner) -> None:
        model = unwrap(runner.model)
        # fail before the first batch if no adapter fits the model
        find_adapter(model)
        repair_stock_model(model)
        # the loop's ADVR forward, like every other, one canvas group at a time
        self._restore_test_step = install_grouped_test_step(model)
        self._fp16 = bool(getattr(runner.test_loop, 'fp16', False))
        self._frame = pipeline_frame(runner)
        state = self.state_settings()
        # the report's settings: the state's, less what the report never listed
        self._run = RunAttack(settings={k: v for k, v in state.items()
                                        if k not in ('variants', 'resize')},
                              environment=environment(model), state=state)
        publish(runner.message_hub, self._run)
        self._configure_metrics(runner)
        self._preflight(runner)
        self._interval = self.log_interval or next(
            (h.interval for h in getattr(runner, 'hooks', ()) if isinstance(h, LoggerHook)), 1)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        clear(runner.message_hub, BatchAttack)
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
        names = [image_name(s, k) for k, s in enumerate(samples)]
        records = make_records(names, [s.metainfo.get('img_path') for s in samples],
                               result.stats, seconds, get_rank(), batch_idx, sweep=result.sweep)
        # the run's largest epsilon (None) and, in a sweep, each other one
        levels = [(None, result)] + [(e, result.sweep[e]) for e in self.other_epsilons]
        if self.save_perturbations:
            for e, res in levels:
                for k, (s, r) in enumerate(zip(samples, res.perturbations)):
                    save_perturbation(osp.join(runner.work_dir, swept('perturbations', e)), s, r,
                                      k, frame=self._frame)
        self._run.settings['targets'] = dict(adapter=type(targets).__name__,
                                             **getattr(targets, 'settings', {}))
        extra = {name: self._predict(model, images, samples)
                 for name, images in variant_images(clean, samples, levels, self.variants,
                                                    budget_of(self.attack), self.perm_seed,
                                                    self.primary.clip_range)}
        for k, s in enumerate(samples):
            s.set_field(result.stats[k], STATS_FIELD)
            s.set_field({v: extra[v][k] for v in extra}, VARIANTS_FIELD)
            if result.sweep is not None:
                s.set_field({epsilon_label(e): res.stats[k] for e, res in levels if e is not None},
                            SWEEP_STATS_FIELD)
        total = len(runner.test_dataloader) if hasattr(runner.test_dataloader, '__len__') else None
        if (batch_idx + 1) % self._interval == 0 or batch_idx + 1 == total:
            self._log_progress(runner, batch_idx, result.stats, total)
        data_batch['inputs'] = [x.to(c.device) for x, c in zip(result.adv_images, clean)]
        # for the pictures and the records, once the loop has predicted the batch
        publish(runner.message_hub, BatchAttack(
            clean=clean, samples=samples, result=result, orig=extra.get('orig'),
            names=names, records=records))

    def _configure_metrics(self, runner) -> None:
        """Tell every :class:`~mmdag.evaluation.AttackMetric` of the test
        evaluator which variants and epsilons this run predicts."""
        for m in attack_metrics(runner):
            m.configure(self.made_variants(), self.other_epsilons)

    def _preflight(self, runner) -> None:
        """What would otherwise fail only when its batch arrives, hours in:
        a perturbation directory that cannot be written, test images without
        a saved perturbation."""
        if self.save_perturbations:
            for e in [None] + self.other_epsilons:
                check_writable(osp.join(runner.work_dir, swept('perturbations', e)),
                               'no --save-perturbations')
        if self.perturbations:
            check_saved_perturbations(self.perturbations, runner.test_dataloader.dataset)

    @staticmethod
    def _log_progress(runner, batch_idx: int, stats: list, total: Optional[int]) -> None:
        n = len(stats)
        runner.logger.info(
            f"attack batch {batch_idx + 1}/{'?' if total is None else total}: {n} images, "
            f"iters {sum(s['iters'] for s in stats) / n:.1f}, "
            f"L-inf {sum(s['linf'] for s in stats) / n:.2f}, "
            f"targets still correct {100 * sum(s['correct_frac'] for s in stats) / n:.1f}%")

    def _predict(self, model, images, samples) -> list:
        """Predictions as the test loop makes them: canvas groups, and the
        loop's precision (``test_loop.fp16``)."""
        copies = [s.clone() for s in samples]
        with autocast(enabled=self._fp16):
            outs = grouped_test_step(model, dict(inputs=list(images), data_samples=copies))
        return [pred_fields(o) for o in outs]

    def after_test(self, runner) -> None:
        if self._restore_test_step is not None:
            self._restore_test_step()
            self._restore_test_step = None
