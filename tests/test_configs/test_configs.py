"""Every shipped config parses, names the DAG pieces, and its model builds."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT

DAG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'dag', '*.py'))) + [
    osp.join(ROOT, 'configs', 'demo', 'fcn_tiny_synthetic-voc_dag.py')]


@pytest.mark.parametrize('path', DAG_CONFIGS, ids=osp.basename)
def test_dag_config_names_hook_metric_and_builds(path):
    from mmseg.registry import MODELS

    import mmdag  # noqa: F401
    cfg = Config.fromfile(path)
    assert 'mmdag' in cfg.custom_imports['imports']
    hook = [h for h in cfg.custom_hooks if h['type'] == 'mmdag.DAGAttackHook']
    assert len(hook) == 1 and hook[0]['attack']['gamma'] == 0.5
    assert hook[0]['attack']['max_iters'] == 200
    assert cfg.test_evaluator['type'] == 'mmdag.DAGMetric'
    assert cfg.test_evaluator['metric']['type'] == 'IoUMetric'
    assert set(cfg.test_evaluator) == {'type', 'metric'}   # nothing of the base left behind
    init_default_scope('mmseg')
    cfg.model.pop('pretrained', None)
    cfg.model.backbone.pop('init_cfg', None)
    model = MODELS.build(cfg.model)
    assert model.out_channels == 21
