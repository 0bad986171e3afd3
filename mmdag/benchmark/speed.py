"""The speed benchmark (``tools/analysis/benchmark.py``): a DAG iteration's
speed, side by side in one run, on one model and batch.

Methods (the same model, images, targets and iteration count):

- ``floor``: one forward of the batch's target logits plus one backward to the
  images, the least any gradient attack pays per iteration;
- ``mmdag``: :func:`mmdag.apis.attack_batch` (the public API: target building,
  the clean check and the DAG loop included);
- ``dag_class``: :class:`mmdag.attacks.DAG` on the already built targets;
- ``plain``: Algorithm 1 written plainly, one image at a time;
- ``adv_lib``: adv_lib's ``dag`` (segmentation only; ``pip install --no-deps
  adv-lib``: its dependencies serve its other attacks), fed the same logit
  maps and labels;
- ``stock_roialign`` (two-stage detectors; not in the default list): ``mmdag``
  with mmcv's stock RoIAlign backward, the before of the row-sparse lever.
- ``pgd``, ``segpgd``, ``cospgd``, ``apgd`` (not in the default list): the
  budgeted attack classes on the already built targets, epsilon 8 and
  ``--iters`` steps (APGD's loop makes 2 more: the time is per iteration of
  the loop), each with the goal of at most 1.1x the floor (segmentation);
  ``detpgd``, ``togvanishing``, ``togmislabel``, ``toguntargeted`` the same
  on a detector (DetPGD's step is the detector's whole loss, one image at a
  time, beside the loop's check of the targets: no goal is set).

For each: seconds per image-iteration (the time over the iterations actually
made, summed over images), its ratio to the floor, images per second at this
iteration count, and peak memory (the process's peak RSS on the CPU, reset
before each method; max allocated on CUDA). Without ``--checkpoint`` the
model has random weights and the labels are its own clean prediction, so
every target starts correct. Uses CUDA when present unless ``--device cpu``.

Optional levers, off by default, for every method alike:

- ``--amp``: the forwards and backwards under mmengine's ``autocast``
  (float16 on CUDA, bfloat16 on the CPU), as the hook's
  ``attack_autocast=True``. This changes the numbers: logits, gradients and
  so the adversarial images are no longer those of float32;
- ``--channels-last``: the model's weights in ``torch.channels_last`` memory
  format (convolutions may pick other kernels; results equal up to float
  rounding).

The goals printed are those of the CPU (mmdag at most 1.15x the floor) or of
CUDA (at most 1.05x the floor, at least 10x the plain loop's speed), and on
both the per-batch step adding at most 3% to the attack class (``mmdag`` over
``dag_class``).
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Optional, Tuple

import torch

from mmdag.errors import MMDagError

#: the budgeted attack classes, timed on the already built targets (``--methods pgd ...``)
BUDGETED = ('pgd', 'segpgd', 'cospgd', 'apgd', 'detpgd', 'togvanishing', 'togmislabel',
            'toguntargeted')
METHODS = ('floor', 'mmdag', 'dag_class', 'plain', 'adv_lib', 'stock_roialign') + BUDGETED
DEFAULT_METHODS = ('floor', 'mmdag', 'dag_class', 'plain', 'adv_lib')


# -- set-up -------------------------------------------------------------------

def build(args):
    """(model, batch of ``--num-images`` test images, device, scope) of the
    tool's arguments.

    Raises:
        MMDagError: a config or test data root not found.
    """
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope

    from mmdag.checkpoint import safe_loading
    path = config_path(args.config)
    if not path or not osp.isfile(path):
        raise MMDagError(f'config {args.config} not found')
    cfg = Config.fromfile(path)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope', 'mmseg')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if scope == 'mmdet':
        from mmdet.apis import init_detector as init
        from mmdet.registry import DATASETS
    else:
        from mmseg.apis import init_model as init
        from mmseg.registry import DATASETS
    with safe_loading():
        model = init(cfg, args.checkpoint, device=device)
    init_default_scope(scope)
    ds_cfg = cfg.test_dataloader.dataset
    if args.data_root:
        ds_cfg.data_root = args.data_root
    from mmdag.apis.preflight import check_dataset
    problem = check_dataset(Config(dict(test_dataloader=dict(dataset=ds_cfg))))
    if problem:
        raise MMDagError(problem + ' (or --data-root DIR; `python tools/make_synthetic_voc.py '
                         'DIR` makes a small VOC-format set)')
    ds = DATASETS.build(ds_cfg)
    n = min(args.num_images, len(ds))
    batch = pseudo_collate([ds[i] for i in range(n)])
    return model, batch, device, scope


def config_path(config: str) -> Optional[str]:
    """The file of a ``--config``: a path, ``mmdag::...`` or ``configs/...``
    (:func:`mmdag.paths.resolve_config`), or a zoo config of an installed
    package, ``'mmseg::fcn/x.py'`` or ``'mmdet::faster_rcnn/x.py'`` (the
    names of the zoo's ``_base_``); None for a package not installed."""
    from mmdag.paths import resolve_config
    path = resolve_config(config)
    if '::' not in path:
        return path
    from .zoo_models import config_root
    pkg, rel = path.split('::', 1)
    try:
        return osp.join(config_root(pkg), rel)
    except ImportError:
        return None


class Peak:
    """Peak memory of one method: RSS high-water mark (reset through
    /proc/self/clear_refs) on the CPU, max allocated on CUDA."""

    def __init__(self, device):
        self.cuda = str(device).startswith('cuda')

    def reset(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            pass

    def mib(self):
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2 ** 20
        try:
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float('nan')


def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


# -- methods: each returns the image-iterations it made -----------------------

def run_floor(model, batch, images, targets, args):
    ids = list(range(len(images)))
    for _ in range(args.iters):
        xs = [x.detach().clone().requires_grad_(True) for x in images]
        logits = targets.logits(xs, ids)
        loss = sum(z.sum() for z in logits)
        torch.autograd.grad(loss, xs)
    return args.iters * len(images)


def run_mmdag(model, batch, images, targets, args):
    import mmdag.engine.step as api
    stock = api.build_targets
    if args.relabel:   # the public API, with the benchmark's labels for random weights
        api.build_targets = lambda m, x, s, **kw: bench_targets(m, x, s, args)
    try:
        result, _ = api.attack_batch(model, batch, dict(gamma=args.gamma, max_iters=args.iters),
                                     args.targets_cfg, autocast=args.amp)
    finally:
        api.build_targets = stock
    return sum(s['iters'] for s in result.stats)


def run_stock_roialign(model, batch, images, targets, args):
    """``mmdag`` with mmcv's stock RoIAlign backward (two-stage detectors):
    the before of the row-sparse RoIAlign lever."""
    import mmdag.targets.two_stage as two_stage
    two_stage.ROW_SPARSE_BACKWARD = False
    try:
        return run_mmdag(model, batch, images, targets, args)
    finally:
        two_stage.ROW_SPARSE_BACKWARD = True


def run_dag_class(model, batch, images, targets, args):
    from mmdag.attacks import DAG
    result = DAG(gamma=args.gamma, max_iters=args.iters)(images, targets)
    return sum(s['iters'] for s in result.stats)


def run_budgeted(name):
    """A budgeted attack class on the built targets (epsilon 8, its own
    defaults otherwise, ``--iters`` steps; APGD's loop makes 2 more, counted:
    the time is per image-iteration of the loop)."""
    def run(model, batch, images, targets, args):
        from mmdag.attacks import attack_types, build_attack
        attack = build_attack(dict(type=attack_types()[name], epsilon=8.0, max_iters=args.iters))
        result = attack(images, targets)
        return sum(s['iters'] for s in result.stats)
    return run


def run_plain(model, batch, images, targets, args):
    """Algorithm 1 as written, image by image (the targets of image k only)."""
    samples = batch['data_samples']
    done = 0
    for k, x0 in enumerate(images):
        t = bench_targets(model, [x0], [samples[k]], args)
        labels = t.labels[0]
        gen = torch.Generator().manual_seed(k)
        adv = _random_wrong(labels, t.num_classes, t.exclude_adv, gen)
        r = torch.zeros_like(x0)
        for _ in range(args.iters):
            x = (x0 + r).clamp(0, 255).requires_grad_(True)
            z = t.logits([x], [0])[0]
            active = t.correct(z, labels)
            if not bool(active.any()):
                break
            za = z[active]
            loss = (za.gather(1, adv[active, None]) - za.gather(1, labels[active, None])).sum()
            g, = torch.autograd.grad(loss, x)
            r = r + args.gamma / g.abs().max().clamp_min(1e-12) * g
            done += 1
    return done


def _random_wrong(labels, num_classes, exclude, gen):
    """A random class per target, never the true one nor an excluded one."""
    allowed = torch.tensor([c for c in range(num_classes) if c not in set(exclude)])
    k = torch.randint(0, len(allowed), labels.shape, generator=gen)
    adv = allowed[k]
    hit = adv == labels.cpu()
    adv[hit] = allowed[(k[hit] + 1) % len(allowed)]
    return adv.to(labels.device)


def bench_targets(model, images, samples, args):
    """The target set, as the mmdag method builds it. With random weights
    (no ``--checkpoint``) the labels are the clean prediction, so that every
    target starts correct and every method makes every iteration: the
    segmentation adapter's ``use_gt=False``; for detectors the clean argmax
    of the target logits, after a score threshold of 1e-6 (and, two-stage,
    an IoU threshold of 0) kept every overlapping proposal / assigned prior."""
    from mmdag.targets import build_targets
    t = build_targets(model, images, samples, **args.targets_cfg)
    if args.relabel:
        with torch.no_grad():
            z = t.logits(images, list(range(len(images))))
        t.labels = [zi.argmax(1) if len(zi) else lab for zi, lab in zip(z, t.labels)]
    return t


def load_adv_lib_dag():
    """adv_lib's ``dag``, or None. Its module is loaded by file: the package's
    ``adv_lib.attacks`` imports every attack, some of which need torchvision
    (and its plotting helper visdom), which the DAG code does not use; install
    it with ``pip install --no-deps adv-lib``."""
    import importlib.util
    import types
    spec = importlib.util.find_spec('adv_lib')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = osp.join(list(spec.submodule_search_locations)[0], 'attacks', 'segmentation',
                    'dense_adversary.py')
    if 'visdom' not in sys.modules:
        try:
            import visdom  # noqa: F401
        except ImportError:   # imported by adv_lib's logger, which dag uses only if asked
            sys.modules['visdom'] = types.ModuleType('visdom')
    mod_spec = importlib.util.spec_from_file_location('adv_lib_dense_adversary', path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.dag


def run_adv_lib(model, batch, images, targets, args):
    dag = load_adv_lib_dag()
    if dag is None:
        return None
    from mmdag.targets.segmentation import _seg_logit_maps_one_canvas
    samples = batch['data_samples']
    if len({tuple(x.shape) for x in images}) != 1:
        return None   # adv_lib takes one tensor: images of one size only
    ignore = getattr(model.decode_head, 'ignore_index', 255)
    labels = torch.stack([s.gt_sem_seg.data[0] for s in samples]).to(images[0].device).long()
    masks = labels != ignore
    labels = labels.masked_fill(~masks, 0)

    if args.targets_cfg.get('use_gt', True) is False:   # random weights: the clean prediction
        with torch.no_grad():
            labels = torch.stack(_seg_logit_maps_one_canvas(model, images, samples)).argmax(1)
        masks = torch.ones_like(labels, dtype=torch.bool)
    counted = {'forwards': 0}

    def forward(x01):
        # adv_lib forwards the images still running; all share one size and
        # geometry here, so any of the samples' metainfo serves
        counted['forwards'] += len(x01)
        return torch.stack(_seg_logit_maps_one_canvas(model, list(x01 * 255), samples[:len(x01)]))

    x01 = torch.stack(images) / 255
    dag(forward, x01, labels, masks=masks, adv_threshold=1.0, max_iter=args.iters,
        γ=args.gamma / 255)
    return counted['forwards']


RUNNERS = dict(floor=run_floor, mmdag=run_mmdag, dag_class=run_dag_class, plain=run_plain,
               adv_lib=run_adv_lib, stock_roialign=run_stock_roialign)
RUNNERS.update({name: run_budgeted(name) for name in BUDGETED})


def targets_settings(model, scope: str, random_weights: bool) -> Tuple[dict, bool]:
    """The target adapter's arguments and whether the targets are relabelled
    with the clean prediction (:func:`bench_targets`). With random weights the
    clean prediction is the label, so that every target starts correct."""
    if random_weights and scope == 'mmdet':
        from mmdag.targets import TwoStageTargets, find_adapter, predicting_model
        cfg = dict(score_thr=1e-6)
        if find_adapter(predicting_model(model)) is TwoStageTargets:
            # a random RPN proposes anchor-sized boxes anywhere: every proposal
            # that overlaps a ground-truth box at all is a target
            cfg['iou_thr'] = 0.0
        return cfg, True
    return (dict(use_gt=False) if random_weights else {}), False


def time_methods(args, model, batch, device, images) -> List[tuple]:
    """Time each of ``args.methods``, the fastest of ``args.repeats``:
    ``(name, (seconds, image-iterations, peak MiB) or None, note)``."""
    from mmdag.engine.step import attack_mode
    peak = Peak(device)
    rows = []
    with attack_mode(model, autocast=args.amp):
        targets = bench_targets(model, images, batch['data_samples'], args)
        # warm-up (allocator, kernel selection), so that the first method timed is not penalised
        run_floor(model, batch, images, targets, argparse.Namespace(iters=2))
        for name in args.methods:
            if name == 'adv_lib' and args.scope == 'mmdet':
                rows.append((name, None, 'adv_lib has no DAG for detection'))
                continue
            best = None
            for _ in range(max(1, args.repeats)):
                peak.reset()
                _sync(device)
                t0 = time.perf_counter()
                its = RUNNERS[name](model, batch, images, targets, args)
                _sync(device)
                dt = time.perf_counter() - t0
                if its is None:
                    break
                if best is None or dt < best[0]:
                    best = (dt, its, peak.mib())
            if best is None:
                rows.append((name, None, 'adv_lib not installed (pip install --no-deps adv-lib) or '
                             'images of several sizes'))
            else:
                rows.append((name, best, ''))
    return rows


def run(args) -> List[tuple]:
    """The whole benchmark of the tool's arguments (``config``,
    ``checkpoint``, ``data_root``, ``num_images``, ``iters``, ``gamma``,
    ``methods``, ``device``, ``repeats``, ``amp``, ``channels_last``,
    ``cfg_options``): build, time every method, print the table and the
    goals; return the rows (:func:`time_methods`). ``args`` gains
    ``scope``, ``targets_cfg`` and ``relabel``, which the methods read.

    Raises:
        MMDagError: a config or test data root not found.
    """
    model, batch, device, scope = build(args)
    args.scope = scope
    args.targets_cfg, args.relabel = targets_settings(model, scope, args.checkpoint is None)
    from mmdag.engine.step import _batch_images
    images = _batch_images(model, batch)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    rows = time_methods(args, model, batch, device, images)
    print(format_rows(rows, args, device, len(images), tuple(images[0].shape)))
    return rows


def format_rows(rows, args, device, n, shape):
    dev = str(device)
    if dev.startswith('cuda'):
        dev += f' ({torch.cuda.get_device_name()})'
    else:
        dev += f' ({torch.get_num_threads()} threads)'
    floor = next((b[0] / b[1] for name, b, _ in rows if name == 'floor' and b and b[1]), None)
    levers = ''.join(f', {x}' for x, on in (
        ('amp', getattr(args, 'amp', False)),
        ('channels_last', getattr(args, 'channels_last', False))) if on)
    lines = [f'model {osp.basename(args.config)}, {n} images {shape[1]}x{shape[2]}, '
             f'{args.iters} iterations, device {dev}, torch {torch.__version__}{levers}',
             f"{'method':<14} {'ms/img-iter':>11} {'x floor':>8} {'img/s':>8} "
             f"{'img-iters':>9} {'peak MiB':>9}"]
    for name, best, note in rows:
        if best is None:
            lines.append(f'{name:<14} {note}')
            continue
        dt, its, mib = best
        per = dt / its if its else float('nan')
        ratio = per / floor if floor else float('nan')
        lines.append(f'{name:<14} {1000 * per:>11.2f} {ratio:>8.2f} {n / dt:>8.2f} '
                     f'{its:>9d} {mib:>9.0f}')
    lines += goal_lines(rows, segmentation=args.scope != 'mmdet', cuda=dev.startswith('cuda'))
    return '\n'.join(lines)


def goal_lines(rows, segmentation=True, cuda=False):
    """The speed goals, as ratios of per-image-iteration times of this run
    (those against the floor and adv_lib are set for segmentation; on CUDA
    mmdag at most 1.05x the floor and at least 10x the plain loop's speed)."""
    per = {name: b[0] / b[1] for name, b, _ in rows if b and b[1]}
    out = []

    def goal(text, value, ok):
        out.append(f'  {text} = {value:.2f} ({"met" if ok else "missed"})')

    if 'mmdag' in per and 'floor' in per and not segmentation:
        # DAG differentiates the targets still correct only, the floor all of them
        out.append(f"  mmdag time / floor time = {per['mmdag'] / per['floor']:.2f}")
    elif 'mmdag' in per and 'floor' in per:
        r = per['mmdag'] / per['floor']
        limit = 1.05 if cuda else 1.15
        goal(f'mmdag time / floor time (goal <= {limit})', r, r <= limit)
    if 'mmdag' in per and 'dag_class' in per:
        # the per-batch step (targets, clean check, result) over the attack class
        r = per['mmdag'] / per['dag_class']
        goal('mmdag step time / DAG class time (goal <= 1.03)', r, r <= 1.03)
    for name in BUDGETED:
        if name in per and 'floor' in per and segmentation:
            r = per[name] / per['floor']
            goal(f'{name} time / floor time (goal <= 1.1)', r, r <= 1.1)
    if 'mmdag' in per and 'adv_lib' in per:
        r = per['adv_lib'] / per['mmdag']
        goal('mmdag speed / adv_lib speed (goal >= 1.15)', r, r >= 1.15)
    if 'mmdag' in per and 'stock_roialign' in per:
        out.append(f"  stock RoIAlign backward time / mmdag time = "
                   f"{per['stock_roialign'] / per['mmdag']:.2f}")
    if 'mmdag' in per and 'plain' in per:
        r = per['plain'] / per['mmdag']
        if cuda:
            goal('mmdag speed / plain loop speed (goal >= 10)', r, r >= 10)
        else:
            out.append(f'  mmdag speed / plain loop speed = {r:.2f}')
    return ['goals (ratios of ms per image-iteration, this run):'] + out if out else []
