"""How mmdag's hooks and its metric wrapper work together, in one place.

:class:`~mmdag.engine.AttackHook` attacks each test batch; the figure, report
and resume hooks and :class:`~mmdag.evaluation.AttackMetric` use what it did.
They find each other only through this module:

- the objects of :mod:`mmdag.contract` published on the runner's message hub
  (:func:`publish`, :func:`published`): :class:`~mmdag.contract.RunAttack`
  once before the first batch, :class:`~mmdag.contract.BatchAttack` for each
  batch (cleared before the batch is attacked, published before the loop
  predicts it), :class:`~mmdag.contract.CheckpointFit` once the weights are
  loaded;
- the data-sample fields of :mod:`mmdag.contract` (``STATS_FIELD``,
  ``VARIANTS_FIELD``, ``SWEEP_STATS_FIELD``) that carry a batch's attack
  statistics and extra predictions from the attack hook to the metric;
- :func:`attack_metrics`: the test evaluator's ``AttackMetric`` instances,
  which the attack hook configures and the report and resume hooks read.

What a hook changes in the stock test loop (nothing else is changed):

- the attack hook replaces ``data_batch['inputs']`` by the adversarial
  images (``before_test_iter``) and, from ``before_test`` to ``after_test``,
  the model's ``test_step`` by its canvas-grouped version
  (:func:`mmdag.targets.batching.install_grouped_test_step`);
- the resume hook replaces ``runner.test_loop.dataloader`` by one over the
  images still to do (:func:`mmdag.engine.resume.remaining_loader`) and
  restores the finished images' results into the ``AttackMetric`` instances.
"""
from typing import List, Optional, Type, TypeVar

from mmdag.contract import HUB_KEYS

T = TypeVar('T')


def publish(hub, obj) -> None:
    """Publish one of :data:`mmdag.contract.HUB_KEYS`' objects on the
    message hub ``hub`` (``runner.message_hub``), replacing the last one."""
    hub.update_info(HUB_KEYS[type(obj)], obj, resumed=False)


def clear(hub, kind: type) -> None:
    """No object of ``kind`` published (a batch that is not attacked)."""
    hub.update_info(HUB_KEYS[kind], None, resumed=False)


def published(hub, kind: Type[T]) -> Optional[T]:
    """The object of ``kind`` last published on ``hub``, or None."""
    obj = hub.get_info(HUB_KEYS[kind])
    return obj if isinstance(obj, kind) else None


def attack_metrics(runner) -> List:
    """The :class:`~mmdag.evaluation.AttackMetric` instances of the runner's
    test evaluator, in its order."""
    from mmdag.evaluation import AttackMetric
    return [m for m in all_metrics(runner) if isinstance(m, AttackMetric)]


def all_metrics(runner) -> list:
    """Every metric of the runner's test evaluator, in its order."""
    evaluator = getattr(getattr(runner, 'test_loop', None), 'evaluator', None)
    return list(getattr(evaluator, 'metrics', None) or [])
