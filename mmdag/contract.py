"""The facts the layers agree on, written once.

Plain Python (no torch or OpenMMLab import at module level): the attacks, the hooks, the
metric, the records and the benchmark all read them from here.

- the prediction variants and the data-sample fields that carry a batch's
  attack results from the hook to the metric;
- the statuses of an attacked image, and those that no mean counts;
- the image key: the name under which an image's perturbation, record and
  picture are written, and the key of its random choices.
"""
import os.path as osp
import zlib
from typing import List, Optional

#: The variants a run reports: the clean images (ORIG), the adversarial ones
#: (ADVR, what the test loop itself predicts), the spatially permuted
#: perturbation (PERM, the paper's control) and the adversarial images
#: rounded to 8 bits inside the budget (ADVR_UINT8: what an attacker can
#: store in an image file, the "deployable" figure beside the float one).
VARIANTS = ('orig', 'advr', 'perm', 'advr_uint8')
#: The variants the attack hook predicts itself (ADVR is the loop's).
EXTRA_VARIANTS = ('orig', 'perm', 'advr_uint8')
#: The variants that exist once per epsilon of a sweep (ORIG does not).
SWEPT_VARIANTS = ('advr', 'perm', 'advr_uint8')
#: The worst case of an ensemble's members chosen per image greedily for
#: mIoU (:mod:`mmdag.evaluation.greedy`), beside ADVR's image-wise one.
GREEDY_VARIANT = 'advr_greedy'
#: The worst case of an ensemble's members chosen per image on a detector's
#: output: the fewest objects found (:mod:`mmdag.evaluation.det_errors`).
DET_WORST_VARIANT = 'advr_worst'
#: The worst cases chosen per image on the predictions, and their labels.
CHOSEN_VARIANTS = {GREEDY_VARIANT: 'worst case, greedy for mIoU',
                   DET_WORST_VARIANT: 'worst case, lowest mAP'}
#: Prefix of the detection error breakdown's metric keys (``errors/advr/missed``).
ERRORS_PREFIX = 'errors'
#: Prefix of TIDE's breakdown's metric keys (``tide/advr/dAP/cls``).
TIDE_PREFIX = 'tide'
#: Prefix of the attack statistics' metric keys (``dag/linf``).
STATS_PREFIX = 'dag'

#: Data-sample field: the attack statistics of the image (a dict, see
#: :class:`mmdag.attacks.AttackResult`).
STATS_FIELD = 'dag_stats'
#: Data-sample field: the ORIG / PERM predictions, ``{variant: fields}``.
VARIANTS_FIELD = 'dag_variants'
#: Data-sample field of an epsilon sweep: the attack statistics of the
#: image at each epsilon but the largest, ``{epsilon_label: stats}``.
SWEEP_STATS_FIELD = 'dag_sweep_stats'
#: Data-sample fields that carry a model's predictions (what differs per variant).
PRED_FIELDS = ('pred_sem_seg', 'seg_logits', 'pred_instances', 'pred_panoptic_seg')

#: Why an image stopped being updated.
STATUS = ('converged', 'max_iters', 'zero_grad', 'non_finite', 'no_targets', 'none_correct',
          'undone_by_rounding')
#: Statuses of images with nothing to count: no mean of the statistics
#: counts them (nothing was correct on the clean image, or no decision).
#: They come back clean, except under an attack whose loss needs no correct
#: target (DetPGD, TOG), which attacks them all the same.
NOT_ATTACKED = ('no_targets', 'none_correct', 'non_finite')
#: Statuses of images the quantize re-check leaves alone (nothing to check).
NOTHING_ATTACKED = ('no_targets', 'none_correct')


def epsilon_label(epsilon: float) -> str:
    """An epsilon as metric keys, records and file names write it (``0.25``, ``8``)."""
    return f'{float(epsilon):g}'


def swept(name: str, epsilon: Optional[float]) -> str:
    """The name of a variant (or of the statistics' prefix) at one epsilon of
    a sweep: ``advr@0.25``; the name itself for None (a run's largest
    epsilon, or a run without a sweep)."""
    return name if epsilon is None else f'{name}@{epsilon_label(epsilon)}'


def member_variant(member: str) -> str:
    """The variant of an ensemble member's own adversarial images:
    ``advr[PGD]`` (the ensemble's, the worst case per image, is ``advr``)."""
    return f'advr[{member}]'


def variant_parts(name: str) -> tuple:
    """``'advr[PGD]@0.5'`` -> ``('advr', 'PGD', 0.5)``: the variant, the
    ensemble member (None) and the epsilon of a sweep (None)."""
    head, eps = split_swept(name)
    base, bracket, member = head.partition('[')
    if bracket and member.endswith(']'):
        return base, member[:-1], eps
    return head, None, eps


def split_swept(name: str) -> tuple:
    """``'advr@0.25'`` -> ``('advr', 0.25)``; ``'advr'`` -> ``('advr', None)``."""
    base, at, eps = name.partition('@')
    if not at:
        return name, None
    try:
        return base, float(eps)
    except ValueError:
        return name, None


def _meta(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else {}


def image_name(sample, index: int = 0) -> str:
    """An image's name: its file's stem (unique in a VOC split), or
    ``sample_<idx>`` without a file. Perturbations (``<name>.npz``), records
    (``image``), resume states and pictures (``<name>.png``) use it."""
    meta = _meta(sample)
    path = meta.get('img_path')
    if path:
        return osp.splitext(osp.basename(str(path)))[0]
    return f"sample_{meta.get('sample_idx', index)}"


def image_seeds(data_samples: list, base: int = 0) -> List[int]:
    """One integer per sample from its file name with extension (or its
    index), so that random choices do not depend on batch composition or the
    number of processes."""
    seeds = []
    for k, s in enumerate(data_samples):
        meta = _meta(s)
        key = meta.get('img_path') or meta.get('sample_idx') or k
        key = str(key).replace('\\', '/').rsplit('/', 1)[-1]
        seeds.append((zlib.crc32(key.encode()) + base) % (2 ** 31))
    return seeds


def unwrap(model):
    """The model inside a wrapper (``MMDistributedDataParallel``...): the
    one whose ``test_step`` and ``data_preprocessor`` the attack uses."""
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


def pred_fields(sample) -> dict:
    """A data sample's prediction fields (:data:`PRED_FIELDS`) as plain dicts."""
    from mmengine.structures import BaseDataElement
    out = {}
    for k in PRED_FIELDS:
        if k in sample:
            v = sample.get(k)
            out[k] = v.to_dict() if isinstance(v, BaseDataElement) else v
    return out


#: Message-hub key (``runner.message_hub.get_info``): the current batch's
#: attack, published by :class:`mmdag.engine.DAGAttackHook` before the test
#: iteration: ``clean`` images, ``samples``, the attack's ``result``, the
#: ``orig`` predictions (or None), the image ``names`` and their ``records``.
BATCH_INFO = 'mmdag_batch'
#: Message-hub key: the run's settings and environment, published by the
#: attack hook for the report (``settings``, ``environment``).
RUN_INFO = 'mmdag_run'
