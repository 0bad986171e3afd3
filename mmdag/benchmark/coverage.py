"""Zoo family coverage: which model families of the installed mmseg / mmdet
config trees mmdag attacks.

For every family (a sub-folder of ``<package>/.mim/configs``) one config is
built with random weights on the CPU (no download), its stock ``test_step``
is run on a one-image batch with one ground-truth object, then
:func:`mmdag.apis.attack_batch` is asked for a few DAG iterations. A family is

- ``attacked``: the attack returned (the adapter, the number of targets and
  the attack's status are recorded; zero targets still count);
- ``refused``: mmdag raised one of its one-line errors
  (:class:`mmdag.errors.MMDagError`, e.g. ``UnsupportedModelError``);
- ``crashed``: anything else (or an ``MMDagError`` whose message is not one
  line): the exception, its first line and the innermost traceback frame;
- ``no_stock_forward``: no candidate config builds offline and runs its own
  ``test_step`` on the CPU; excluded from the percentages.

With random weights the adapter's defaults often leave nothing to update (no
two-stage proposal scores its true class above 0.1, no pixel predicts the
ground truth); such a family is attacked a second time with
:data:`RELAXED_TARGETS` so that the gradient path runs too, and a failure
there counts. The ground-truth class is 1 (0 for one-class models).

``tools/analysis/zoo_coverage.py`` is the command line; the slow test
``tests/test_zoo/test_zoo_coverage.py`` compares a full survey with the
committed ``tests/test_zoo/families.json``.
"""
import gc
import os
import os.path as osp
import time
from typing import Callable, Dict, Iterable, List, Optional

import torch

from mmdag.fileio import write_atomic  # noqa: F401  (also tools/analysis/zoo_coverage.py's)
from .coverage_table import (OUTCOMES, README_END, README_START, _short_reason,  # noqa: F401
                             attacked_detail, expected_entries, expected_entry, markdown_table,
                             readme_section, summarize, summary_line, update_readme, updated)
from .describe import _first_line, _short_path, describe_exception  # noqa: F401
from .zoo_models import (DET_BOX, MAX_TRIES, PACKAGES, PAD_ROWS, PREFERRED, SIZE,  # noqa: F401
                         SIZE_OVERRIDES, _has_model, _quiet, build_model, config_root,
                         family_configs, list_families, load_config, make_batch)

#: target settings of a second attack when the adapter's defaults made no
#: update (no target, or none still correct), so that the attack's gradient
#: path runs for every attacked family. With random weights a detector's
#: class scores are near uniform (about 1/81 for a COCO softmax box head,
#: under the two-stage default ``score_thr=0.1``; the one-stage setting is
#: that of the repo's random-weight tests in tests/test_targets; two-stage:
#: every one of the 300 highest-objectness proposals that touches the box,
#: about 150, where the default 3000 proposals cost 3 times as long and the
#: 300 at IoU > 0.1 are often none), and a segmentor predicts one class
#: everywhere, often neither of the ground truth's two (then every pixel is
#: already wrong; ``use_gt=False`` labels pixels by the prediction).
RELAXED_TARGETS: Dict[str, dict] = {
    'TwoStageTargets': dict(score_thr=0.0, iou_thr=0.0, rpn_max_per_img=300),
    'OneStageTargets': dict(score_thr=1e-6),
    # random query boxes of two-stage DETRs are a few pixels wide: IoU ~0.005
    'QueryTargets': dict(score_thr=1e-6, iou_thr=1e-3),
    'SegmentationTargets': dict(use_gt=False),
}
#: DAG iterations of the second attack with :data:`RELAXED_TARGETS`: one
#: update runs the gradient path; a second would double its cost
RELAXED_ITERS = 1


def _record(family: str) -> dict:
    package = family.split('::')[0]
    return dict(family=family, package=package, config=None, outcome=None, reason='', adapter=None,
                num_targets=None, iters=None, status=None, seconds=0.0, tried=[], failures={},
                size=list(SIZE_OVERRIDES.get(family, SIZE)), gt_label=None, relaxed=None,
                timing={}, violations=[], bias_note=None, figures={}, attacks={})


def survey_family(family: str, max_iters: int = 2) -> dict:
    """Build one config of ``family`` with random weights, run its stock
    forward, then ``max_iters`` DAG iterations; returns the family's record.

    Keys: family, package, config (``'<package>::<rel path>'`` of the config
    tested, None when none ran), outcome (one of :data:`OUTCOMES`), reason
    (the refusal or crash, or why no stock forward ran), adapter (target set
    class), num_targets, iters, status, seconds, tried (configs tried),
    failures (config -> why it was not used), size (input h, w), gt_label,
    relaxed (the second attack, see :data:`RELAXED_TARGETS`) and timing
    (seconds of build, stock forward, attack). Never raises for a family's
    own failure.
    """
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    t0 = time.perf_counter()
    rec = _record(family)
    package = rec['package']
    size = tuple(rec['size'])
    timing = rec['timing']
    model = None
    try:
        root = config_root(package)
        for rel in family_configs(family):
            if len(rec['tried']) >= MAX_TRIES:
                break
            if not _has_model(osp.join(root, rel)):
                continue
            rec['tried'].append(f'{package}::{rel}')
            try:
                t = time.perf_counter()
                with _quiet():
                    model = build_model(package, load_config(package, rel))
                    timing['build'] = round(time.perf_counter() - t, 2)
                    t = time.perf_counter()
                    with torch.no_grad():
                        model.test_step(make_batch(package, size))
                    timing['forward'] = round(time.perf_counter() - t, 2)
            except Exception as e:   # noqa: B902 - any zoo failure is a finding
                rec['failures'][f'{package}::{rel}'] = describe_exception(e)
                model = None
                gc.collect()
                continue
            rec['config'] = f'{package}::{rel}'
            break
        if model is None:
            rec['outcome'] = 'no_stock_forward'
            rec['reason'] = (next(iter(rec['failures'].values())) if rec['failures']
                             else 'no config of the family defines a model')
        else:
            rec['gt_label'] = label = gt_label(model)
            t = time.perf_counter()
            rec.update(_attack(model, package, size, max_iters, label))
            timing['attack'] = round(time.perf_counter() - t, 2)
            relaxed = RELAXED_TARGETS.get(rec['adapter'])
            if rec['outcome'] == 'attacked' and relaxed and not rec['iters']:
                # random weights: the adapter's defaults left nothing to update
                t = time.perf_counter()
                again = _attack(model, package, size, min(max_iters, RELAXED_ITERS), label, relaxed)
                timing['relaxed'] = round(time.perf_counter() - t, 2)
                rec['relaxed'] = dict(targets_cfg=relaxed, **{k: again[k] for k in (
                    'outcome', 'reason', 'num_targets', 'iters', 'status')})
                # the invariants of the run that had targets
                rec['violations'] = (rec['violations']
                                     + [f'relaxed: {v}' for v in again['violations']])
                rec['bias_note'] = rec['bias_note'] or again['bias_note']
                rec['figures'] = rec['figures'] or again['figures']
                opts = ', '.join(f'{k}={v}' for k, v in relaxed.items())
                if again['outcome'] == 'attacked':
                    rec['reason'] = (f'{rec["num_targets"]} targets, {rec["iters"]} updates with '
                                     f'the adapter defaults; {again["num_targets"]} targets, '
                                     f'{again["iters"]} updates with {opts}')
                else:
                    rec['outcome'] = again['outcome']
                    rec['reason'] = f'with {opts}: {again["reason"]}'
            if rec['outcome'] == 'attacked' and package == 'mmdet':
                # the detection attacks, under the settings that gave DAG targets
                from .det_attack_survey import survey_detection_attacks
                t = time.perf_counter()
                cfg = rec['relaxed']['targets_cfg'] if rec['relaxed'] else None
                pad = PAD_ROWS if size[0] >= 8 * PAD_ROWS else 0
                rec['attacks'] = survey_detection_attacks(
                    model, lambda: make_batch(package, size, label=label, pad=pad), cfg)
                timing['attacks'] = round(time.perf_counter() - t, 2)
    except Exception as e:   # noqa: B902 - the survey itself must go on
        rec['outcome'] = 'crashed'
        rec['reason'] = 'survey error: ' + describe_exception(e, frames=True)
    finally:
        del model
        gc.collect()
        rec['seconds'] = round(time.perf_counter() - t0, 2)
    return rec


def gt_label(model) -> int:
    """The class of the ground-truth object: 1, or 0 for a model with one
    class (crowd and face detectors, RPN), where 1 would be out of range
    (and, for a softmax box head, the background)."""
    heads = [getattr(model, 'decode_head', None), getattr(model, 'bbox_head', None),
             getattr(getattr(model, 'roi_head', None), 'bbox_head', None),
             getattr(model, 'rpn_head', None)]
    for head in heads:
        if isinstance(head, (torch.nn.ModuleList, list, tuple)):
            head = head[-1] if len(head) else None
        n = getattr(head, 'num_classes', None)
        if isinstance(n, int):
            return 1 if n > 1 else 0
    return 1


def _attack(model, package: str, size, max_iters: int, label: int = 1,
            targets_cfg: Optional[dict] = None) -> dict:
    """``attack_batch`` on a fresh batch, classified: outcome, reason,
    adapter, num_targets, iters and status of the image."""
    from mmdag.apis import attack_batch
    from mmdag.attacks.stats import region_mask
    from mmdag.engine.step import attack_mode, content_region
    from mmdag.errors import MMDagError
    out = dict(outcome=None, reason='', adapter=None, num_targets=None, iters=None, status=None,
               logit_range=None, padding_linf=None, violations=[], bias_note=None, figures={})
    # detectors get a padded image (the box stays inside the image part)
    pad = PAD_ROWS if package == 'mmdet' and size[0] >= 8 * PAD_ROWS else 0
    batch = make_batch(package, size, label=label, pad=pad)
    try:
        with _quiet():
            result, targets = attack_batch(model, batch, attack=dict(max_iters=max_iters),
                                           targets_cfg=targets_cfg)
            image = batch['inputs'][0].float()
            if result.adv_images:
                image = image.to(result.adv_images[0].device)
            with attack_mode(model), torch.no_grad():
                clean = targets.logits([image], [0])[0]
    except MMDagError as e:
        msg = str(e).strip()
        if '\n' in msg:
            out['outcome'] = 'crashed'
            out['reason'] = 'multi-line MMDagError: ' + describe_exception(e, frames=True)
        else:
            out['outcome'] = 'refused'
            out['reason'] = msg
    except Exception as e:   # noqa: B902 - any failure inside mmdag is a finding
        out['outcome'] = 'crashed'
        out['reason'] = describe_exception(e, frames=True)
    else:
        stats = result.stats[0] if result.stats else {}
        iters = stats.get('iters')
        out.update(outcome='attacked', adapter=type(targets).__name__,
                   num_targets=int(len(targets.labels[0])),
                   iters=int(iters) if iters is not None else None, status=stats.get('status'))
        # invariants: the attacked quantity is pre-activation (scores or
        # probabilities would all lie in [0, 1]), and nothing moves in padding
        if clean.numel():
            out['logit_range'] = [round(float(clean.min()), 4), round(float(clean.max()), 4)]
        r = result.perturbations[0] if result.perturbations else None
        mask = (region_mask(r, content_region(batch['data_samples'][0], r))
                if r is not None else None)
        if mask is not None:
            out['padding_linf'] = float((r * (1 - mask)).abs().max())
        if out['num_targets'] == 0:
            out['reason'] = 'zero targets'
        else:
            out.update(_invariants(model, targets, image, batch))
    return out


def _invariants(model, targets, image, batch) -> dict:
    """The survey's invariants of an attacked family (:mod:`mmdag.benchmark.invariants`):
    ``violations`` (lines; a check that breaks is one too), the
    pre-activation check's ``bias_note`` and the clean ``figures``."""
    from mmdag.benchmark import invariants as inv
    out = dict(violations=[], bias_note=None, figures={})
    sample = batch['data_samples'][0]
    checks = (('pre-activation', lambda: inv.pre_activation(model, targets, image)),
              ('settings', lambda: (inv.settings_used(targets, image, sample), None)),
              ('stock predict', lambda: inv.agrees_with_predict(model, targets, image, batch)))
    for name, check in checks:
        try:
            with _quiet():
                problems, extra = check()
        except Exception as e:   # noqa: B902 - a check that breaks is a finding
            problems, extra = [f'the check broke: {describe_exception(e, frames=True)}'], None
        out['violations'] += [f'{name}: {p}' for p in problems]
        if name == 'pre-activation':
            out['bias_note'] = extra
        elif extra:
            out['figures'] = extra
    return out


# --------------------------------------------------------------------------
# the survey and its reports


def progress_line(k: int, n: int, rec: dict) -> str:
    """``[12/134] mmdet::rtmdet attacked (OneStageTargets, 40 targets) 6.1 s``"""
    o = rec['outcome']
    detail = attacked_detail(rec) if o == 'attacked' else _short_reason(rec['reason'])
    line = f'[{k}/{n}] {rec["family"]} {o} ({detail}) {rec["seconds"]:.1f} s'
    for v in rec.get('violations', []):
        line += f'\n    invariant violated: {v}'
    for name, a in (rec.get('attacks') or {}).items():
        grad = ''.join(f', loss gradient ({k}) {v}' for k, v in a.get('loss_grad', {}).items())
        line += (f'\n    {name}: {a["outcome"]} ({a["status"] or _short_reason(a["reason"])}, '
                 f'{a["backwards"]} backward{grad}) {a["seconds"]:.1f} s')
        for v in a['violations']:
            line += f'\n    {name} invariant violated: {v}'
    return line


def survey(families: Optional[Iterable[str]] = None, max_iters: int = 2,
           progress: Optional[Callable[[str], None]] = print) -> List[dict]:
    """Survey ``families`` (default: :func:`list_families`); one record per
    family (:func:`survey_family`), in the given order."""
    families = list_families() if families is None else list(families)
    records = []
    for k, family in enumerate(families, 1):
        rec = survey_family(family, max_iters=max_iters)
        records.append(rec)
        if progress is not None:
            progress(progress_line(k, len(families), rec))
    return records
