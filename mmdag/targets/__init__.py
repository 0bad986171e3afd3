"""Adapters: OpenMMLab model + data batch -> :class:`mmdag.attacks.TargetSet`."""
from mmdag.errors import UnsupportedModelError
from mmdag.registry import TARGETS

# isort: off
# not sorted: the import order is the adapters' registration order, the order
# in which find_adapter tries them and the error message lists their families
from .segmentation import SegmentationTargets
from .two_stage import TwoStageTargets
from .one_stage import OneStageTargets
from .queries import MaskQueryTargets, QueryTargets
# isort: on


def predicting_model(model):
    """The model that makes the predictions: the module of a DDP-like wrapper,
    and for semi-supervised wrappers (SoftTeacher and other
    ``SemiBaseDetector``) the teacher or student that ``semi_test_cfg.predict_on``
    names, as their ``predict`` does."""
    if hasattr(model, 'module') and not hasattr(model, 'test_step'):
        model = model.module
    if hasattr(model, 'teacher') and hasattr(model, 'student') and hasattr(model, 'semi_test_cfg'):
        model = getattr(model, (model.semi_test_cfg or {}).get('predict_on', 'teacher'))
    return model


def find_adapter(model):
    """The adapter class registered in ``TARGETS`` that accepts ``model``."""
    model = predicting_model(model)
    for cls in TARGETS.module_dict.values():
        if cls.accepts(model):
            return cls
    families = '; '.join(c.family for c in TARGETS.module_dict.values())
    for cls in TARGETS.module_dict.values():
        reason = getattr(cls, 'refusal', lambda m: None)(model)
        if reason:
            raise UnsupportedModelError(f'{reason}. Supported families: {families}.')
    raise UnsupportedModelError(
        f'mmdag has no DAG target adapter for {type(model).__name__}. '
        f'Supported families: {families}.')


def build_targets(model, inputs, data_samples, **kwargs):
    """Build the target set of a batch for ``model`` (adapter chosen by type)."""
    model = predicting_model(model)
    return find_adapter(model)(model, inputs, data_samples, **kwargs)


__all__ = ['MaskQueryTargets', 'OneStageTargets', 'QueryTargets', 'SegmentationTargets',
           'TwoStageTargets', 'UnsupportedModelError', 'build_targets', 'find_adapter',
           'predicting_model']
