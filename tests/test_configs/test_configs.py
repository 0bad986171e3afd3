"""Every shipped config parses, names the DAG pieces, and its model builds."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT

DAG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'dag', '*.py'))) + [
    osp.join(ROOT, 'configs', 'demo', 'fcn_tiny_synthetic-voc_dag.py'),
    osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_tiny_synthetic-voc_dag.py')]


def _task(cfg):
    """'seg' or 'det', from the wrapped metric (the config's own claim)."""
    metric = cfg.test_evaluator['metric']['type']
    return 'seg' if metric == 'IoUMetric' else 'det'


@pytest.mark.parametrize('path', DAG_CONFIGS, ids=osp.basename)
def test_dag_config_names_hook_metric_and_builds(path):
    import mmdag  # noqa: F401
    cfg = Config.fromfile(path)
    assert 'mmdag' in cfg.custom_imports['imports']
    hook = [h for h in cfg.custom_hooks if h['type'] == 'mmdag.AttackHook']
    assert len(hook) == 1 and hook[0]['attack']['gamma'] == 0.5
    assert hook[0]['attack']['max_iters'] == 200
    assert cfg.test_evaluator['type'] == 'mmdag.AttackMetric'
    assert set(cfg.test_evaluator) == {'type', 'metric'}   # nothing of the base left behind
    task = _task(cfg)
    if task == 'seg':
        from mmseg.registry import MODELS
        assert cfg.test_evaluator['metric']['type'] == 'IoUMetric'
        init_default_scope('mmseg')
    else:
        from mmdet.registry import MODELS
        assert cfg.test_evaluator['metric']['type'] in ('VOCMetric', 'CocoMetric')
        init_default_scope('mmdet')
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.pop('init_cfg', None)
    model = MODELS.build(cfg.model)
    if task == 'seg':
        assert model.out_channels == 21
    else:
        from mmdag.targets import find_adapter
        assert find_adapter(model) is not None      # a family mmdag can attack
        assert 'targets' in hook[0]
