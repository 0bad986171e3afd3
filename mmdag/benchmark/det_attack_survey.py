"""The zoo survey's detection attacks: DetPGD and TOG vanishing on every
detector family that DAG attacks (:mod:`mmdag.benchmark.coverage`).

For a family whose DAG run was attacked, each attack of
:data:`DETECTION_ATTACKS` runs for one step on a fresh one-image batch, with
the target settings under which DAG found targets. Its record holds the
outcome (``attacked``, ``refused`` with mmdag's one-line error, ``crashed``),
the image's status and backward passes (a step that ran the gradient path
has one), and the violations of what must hold after any attack: the
model's parameters and buffers bit for bit, every module's mode, the budget
and the valid range.
"""
import time
from typing import Dict, Optional

import torch

from mmdag.targets.det_loss import same_values

#: the attacks surveyed beside DAG, one step each (a step runs the gradient
#: path; more would multiply the survey's time)
DETECTION_ATTACKS = (dict(type='DetPGD', max_iters=1, epsilon=8),
                     dict(type='TOGVanishing', max_iters=1, epsilon=8))


def _snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {n: m.training for n, m in model.named_modules()})


def _changed(model, before) -> list:
    state, modes = _snapshot(model)
    out = [f'buffer or parameter {k} changed' for k in state
           if k not in before[0] or not same_values(state[k], before[0][k])][:3]
    if modes != before[1]:
        out.append('a module changed its train/eval mode')
    return out


def survey_detection_attacks(model, batch_fn,
                             targets_cfg: Optional[dict] = None) -> Dict[str, dict]:
    """Each of :data:`DETECTION_ATTACKS` on ``batch_fn()`` (module docstring);
    never raises for an attack's own failure."""
    from mmdag.apis import attack_batch
    from mmdag.errors import MMDagError
    from .describe import describe_exception
    from .zoo_models import _quiet
    out = {}
    for cfg in DETECTION_ATTACKS:
        rec = dict(outcome=None, reason='', status=None, backwards=None, seconds=0.0,
                   violations=[])
        t = time.perf_counter()
        before = _snapshot(model)
        batch = batch_fn()
        try:
            with _quiet():
                result, targets = attack_batch(model, batch, dict(cfg), targets_cfg=targets_cfg)
                if cfg['type'] == 'DetPGD':
                    rec['loss_grad'] = _loss_grad(model, targets, batch)
        except MMDagError as e:
            msg = str(e).strip()
            rec['outcome'] = 'refused' if msg and '\n' not in msg else 'crashed'
            rec['reason'] = msg if rec['outcome'] == 'refused' else describe_exception(e, True)
        except Exception as e:   # noqa: B902 - any failure inside mmdag is a finding
            rec['outcome'] = 'crashed'
            rec['reason'] = describe_exception(e, frames=True)
        else:
            s = result.stats[0] if result.stats else {}
            rec.update(outcome='attacked', status=s.get('status'), backwards=s.get('backwards'))
            x0 = batch['inputs'][0].float().to(result.adv_images[0].device)
            adv = result.adv_images[0]
            if float((adv - x0).abs().max()) > cfg['epsilon'] + 1e-3:
                rec['violations'].append(f'L-inf {float((adv - x0).abs().max()):.3f} over the '
                                         f"budget {cfg['epsilon']}")
            if float(adv.min()) < 0 or float(adv.max()) > 255:
                rec['violations'].append('the adversarial image left 0..255')
        rec['violations'] += _changed(model, before)
        rec['seconds'] = round(time.perf_counter() - t, 2)
        out[cfg['type']] = rec
    return out


def _loss_grad(model, targets, batch) -> dict:
    """Whether the detector loss's gradient on the clean image is finite
    and non-zero, for all terms and the classification terms: ``'finite'``,
    ``'non-finite'``, ``'zero'``, ``'no term'`` (a head whose loss has no
    classification term by that name, e.g. CornerNet's) or ``'error: ...'``
    (the model's own loss failed, e.g. its matcher on NaN costs)."""
    from mmdag.engine.step import attack_mode
    from mmdag.errors import MMDagError
    from .describe import describe_exception
    out = {}
    for terms in ('all', 'cls'):
        try:
            with attack_mode(model):
                x = batch['inputs'][0].float().to(targets.labels[0].device).requires_grad_()
                loss = targets.detector_loss([x], [0], [0], terms)[0]
                grad, = torch.autograd.grad(loss, [x])
        except MMDagError as e:
            out[terms] = 'no term' if 'loss term' in str(e) else f'refused: {e}'
            continue
        except Exception as e:   # noqa: B902 - the model's own loss: a finding
            out[terms] = 'error: ' + describe_exception(e, frames=True)
            continue
        out[terms] = ('non-finite' if not bool(torch.isfinite(grad).all())
                      else 'zero' if not bool(grad.abs().sum() > 0) else 'finite')
    return out
