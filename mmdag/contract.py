"""The facts the layers agree on, written once.

Plain Python (no torch or OpenMMLab import at module level): the attacks, the hooks, the
metric, the records and the benchmark all read them from here.

- the prediction variants and the data-sample fields that carry a batch's
  attack results from the hook to the metric;
- the statuses of an attacked image, and those that no mean counts;
- the image key: the name under which an image's perturbation, record and
  picture are written, and the key of its random choices;
- the files a run writes in its work dir, and their names before 0.2;
- the objects the hooks publish for each other (:class:`RunAttack`,
  :class:`BatchAttack`, :class:`CheckpointFit`; how they travel:
  :mod:`mmdag.engine.wiring`).
"""
import os.path as osp
import zlib
from dataclasses import dataclass
from typing import Any, List, Optional

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
#: Prefix of the attack statistics' metric keys (``attack/linf``).
STATS_PREFIX = 'attack'
#: The statistics' prefix before 0.2 (``dag/linf``): old reports and states
#: are read with :func:`upgrade_keys`.
OLD_STATS_PREFIX = 'dag'

#: Data-sample field: the attack statistics of the image (a dict, see
#: :class:`mmdag.attacks.AttackResult`).
STATS_FIELD = 'attack_stats'
#: Data-sample field: the ORIG / PERM predictions, ``{variant: fields}``.
VARIANTS_FIELD = 'attack_variants'
#: Data-sample field of an epsilon sweep: the attack statistics of the
#: image at each epsilon but the largest, ``{epsilon_label: stats}``.
SWEEP_STATS_FIELD = 'attack_sweep_stats'

#: What a run writes in its work dir (the hooks' defaults): the report, the
#: per-image records, the state a killed run resumes from, the pictures of
#: an epsilon sweep's curve and of the detection errors.
REPORT_FILE = 'attack_report.json'
RECORDS_FILE = 'attack_records.jsonl'
STATE_DIR = 'attack_state'
CURVE_FILE = 'attack_curve.png'
ERRORS_FILE = 'attack_errors.png'
#: Their names before 0.2, when every run was named after DAG: readers
#: (:func:`work_path`) take a work dir written then.
OLD_FILE_NAMES = {REPORT_FILE: 'dag_report.json', RECORDS_FILE: 'dag_records.jsonl',
                  STATE_DIR: 'dag_state', CURVE_FILE: 'dag_curve.png',
                  ERRORS_FILE: 'dag_errors.png'}


def work_path(work_dir: str, name: str) -> str:
    """The path of a work dir's file ``name`` (one of the names above): the
    file of that name, or the one of its name before 0.2 when only that one
    exists (a work dir written by an older mmdag)."""
    path = osp.join(work_dir, name)
    old = OLD_FILE_NAMES.get(name)
    if old is not None and not osp.exists(path) and osp.exists(osp.join(work_dir, old)):
        return osp.join(work_dir, old)
    return path


#: The registered names of the hooks and the metric wrapper before 0.2
#: (named after DAG), and today's: both build (the old names are registered
#: too), and a run's saved settings read the old names as today's.
OLD_TYPE_NAMES = {'DAGAttackHook': 'AttackHook', 'DAGFigureHook': 'AttackFigureHook',
                  'DAGReportHook': 'AttackReportHook', 'DAGResumeHook': 'AttackResumeHook',
                  'DAGMetric': 'AttackMetric'}


def upgrade_type_name(name: str) -> str:
    """A type name as this version registers it: ``'mmdag.DAGMetric'`` ->
    ``'mmdag.AttackMetric'``, ``'DAGAttackHook'`` -> ``'AttackHook'``;
    any other string unchanged."""
    scope, dot, short = name.rpartition('.')
    if short in OLD_TYPE_NAMES and scope in ('', 'mmdag'):
        return f'{scope}{dot}{OLD_TYPE_NAMES[short]}'
    return name


def upgrade_key(key: str) -> str:
    """A metric key as this version writes it: ``dag/linf`` -> ``attack/linf``,
    ``dag@0.5/iters`` -> ``attack@0.5/iters``; other keys unchanged."""
    head, slash, rest = key.partition('/')
    base, at, eps = head.partition('@')
    if slash and base == OLD_STATS_PREFIX:
        return f'{STATS_PREFIX}{at}{eps}/{rest}'
    return key


def upgrade_keys(metrics: dict) -> dict:
    """A metrics dict with its keys as this version writes them
    (:func:`upgrade_key`), in the same order."""
    return {upgrade_key(k): v for k, v in metrics.items()}


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


@dataclass
class RunAttack:
    """What the attack hook publishes once, before the first batch
    (:func:`mmdag.engine.wiring.publish`): the run's ``settings`` and
    ``environment`` (the report's) and ``state``, the settings a resumed run
    must share (:class:`mmdag.engine.AttackResumeHook`)."""
    settings: dict
    environment: dict
    state: dict


@dataclass
class BatchAttack:
    """What the attack hook publishes for each test batch, before the loop
    predicts it (cleared first): the ``clean`` images, the data ``samples``,
    the attack's ``result`` (:class:`mmdag.attacks.AttackResult`), the ORIG
    predictions ``orig`` (None when not made), the image ``names`` and
    their ``records`` (:mod:`mmdag.engine.records`). The figure, report and
    resume hooks read it after the loop's prediction."""
    clean: list
    samples: list
    result: Any
    orig: Optional[list]
    names: List[str]
    records: List[dict]


@dataclass
class CheckpointFit:
    """How much of the model the checkpoint set, published by
    :class:`mmdag.engine.CheckpointCheckHook` for the report."""
    unloaded_params: int
    params: int
    unloaded_buffers: int
    unloaded_fraction: float
    missing_parts: list
    allow_partial: bool


#: The message-hub key of each published object (``runner.message_hub``).
HUB_KEYS = {RunAttack: 'mmdag_run', BatchAttack: 'mmdag_batch',
            CheckpointFit: 'mmdag_checkpoint_fit'}
