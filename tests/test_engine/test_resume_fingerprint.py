"""--resume compares the resolved config, the metric arguments and the
checkpoint's content with the killed run's: another set-up is refused in
one line naming the first differing setting, the same one resumes."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch

from mmdag.engine import run_settings as resume
from mmdag.errors import MMDagError
from conftest import TINY


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    torch.save({'state_dict': {'w': torch.randn(64)}}, path)
    return path


def _runner(checkpoint, options=None, attack=None):
    """What the resumed run's hook sees, built as tools/test.py builds it:
    the demo config, --attack dag, the checkpoint, then --cfg-options."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.registry import METRICS, init_default_scope

    from mmdag.apis.config import add_attack_to_config
    from mmdag.contract import RunAttack
    from mmdag.engine import AttackHook, AttackResumeHook
    from mmdag.engine.wiring import publish
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY)
    cfg.work_dir, cfg.launcher = '/somewhere', 'none'
    add_attack_to_config(cfg, attack or {})
    cfg.load_from = checkpoint
    if options:
        cfg.merge_from_dict(options)
    metric = METRICS.build(cfg.test_evaluator)
    hook_cfg = next(dict(h) for h in cfg.custom_hooks if h['type'].endswith('AttackHook'))
    hook_cfg.pop('type')
    # the attack hook publishes its settings; the resume hook compares them
    hub = MessageHub.get_instance('mmdag_resume_fingerprint')
    publish(hub, RunAttack(settings={}, environment={},
                           state=AttackHook(**hook_cfg).state_settings()))
    hook = AttackResumeHook()
    hook._index = {'img0': 0, 'img1': 1}
    runner = SimpleNamespace(cfg=cfg, message_hub=hub, test_loop=SimpleNamespace(
        evaluator=SimpleNamespace(metrics=[metric])))
    return hook, runner


def _saved(work_dir, checkpoint, options=None):
    hook, runner = _runner(checkpoint, options)
    resume.write_settings(work_dir, hook._settings(runner))


def _check(work_dir, checkpoint, options=None, attack=None):
    hook, runner = _runner(checkpoint, options, attack)
    resume.check_settings(work_dir, hook._settings(runner))


@pytest.mark.parametrize('options, named', [
    ({'test_evaluator.metric.ignore_index': 0},
     "another test_evaluator (metric.ignore_index: 255, now 0)"),
    ({'model.test_cfg.mode': 'slide'},
     "another model (test_cfg.mode: 'whole', now 'slide')"),
    ({'test_dataloader.dataset.pipeline.1.scale': (200, 150)},
     "another test_dataloader (dataset.pipeline.1.scale: [160, 120], now [200, 150])"),
    ({'model.decode_head.num_classes': 20},
     "another model (decode_head.num_classes: 21, now 20)"),
])
def test_another_config_is_refused_naming_the_leaf(tmp_path, options, named):
    wd, ck = str(tmp_path / 'wd'), _checkpoint(str(tmp_path / 'a.pth'), 0)
    _saved(wd, ck)
    _check(wd, ck)   # the same set-up resumes
    with pytest.raises(MMDagError) as e:
        _check(wd, ck, options)
    msg = str(e.value)
    assert msg == (f'cannot resume: {osp.join(wd, "attack_state")} holds a run with {named}: '
                   'rerun without --resume, or use another --work-dir')


def test_a_retrained_checkpoint_at_the_same_path_is_refused(tmp_path):
    wd, ck = str(tmp_path / 'wd'), _checkpoint(str(tmp_path / 'a.pth'), 0)
    _saved(wd, ck)
    _check(wd, ck)
    old = resume.file_sha256(ck)
    _checkpoint(ck, 1)   # same path, same size, other weights
    with pytest.raises(MMDagError) as e:
        _check(wd, ck)
    msg = str(e.value)
    assert f"another checkpoint (sha256: '{old}', now '{resume.file_sha256(ck)}')" in msg
    assert '\n' not in msg


def test_what_may_differ_in_a_resumed_run_does_not_refuse_it(tmp_path):
    """The same weights under another path, another launcher and work dir,
    figures, logging, batch size and loader workers: the same numbers."""
    import shutil
    wd, ck = str(tmp_path / 'wd'), _checkpoint(str(tmp_path / 'a.pth'), 0)
    _saved(wd, ck)
    copy = shutil.copy(ck, str(tmp_path / 'copy_of_a.pth'))
    _check(wd, copy, {'launcher': 'pytorch', 'work_dir': str(tmp_path / 'elsewhere'),
                      'env_cfg.cudnn_benchmark': True, 'default_hooks.logger.interval': 1,
                      'log_level': 'DEBUG', 'randomness.seed': 7,
                      'test_dataloader.batch_size': 1, 'test_dataloader.num_workers': 2,
                      'custom_hooks.0.num_figures': 3, 'custom_hooks.0.resume': True,
                      'custom_hooks.0.log_interval': 5,
                      'custom_hooks.1.allow_partial': True,
                      # the metric's default, now set: no change
                      'test_evaluator.metric.ignore_index': 255})


def test_the_attack_settings_are_still_compared(tmp_path):
    wd, ck = str(tmp_path / 'wd'), _checkpoint(str(tmp_path / 'a.pth'), 0)
    _saved(wd, ck)
    with pytest.raises(MMDagError, match=r'another attack \(max_iters: 200, now 3\)'):
        _check(wd, ck, attack=dict(max_iters=3))


def test_settings_of_an_older_mmdag_are_refused(tmp_path):
    import json
    import os
    wd, ck = str(tmp_path / 'wd'), _checkpoint(str(tmp_path / 'a.pth'), 0)
    os.makedirs(resume.state_dir(wd))
    with open(osp.join(resume.state_dir(wd), 'run.json'), 'w') as f:
        json.dump(dict(config='fcn_tiny_synthetic-voc.py', checkpoint=ck), f)
    with pytest.raises(MMDagError, match='older mmdag'):
        _check(wd, ck)


def test_first_difference_names_the_leaf():
    diff = resume.first_difference
    assert diff({'a': [1, {'b': 2}]}, {'a': [1, {'b': 2}]}) is None
    assert diff({'a': [1, {'b': 2}]}, {'a': [1, {'b': 3}]}) == ('a.1.b', 2, 3)
    assert diff({'a': [1]}, {'a': [1, 2]}) == ('a', [1], [1, 2])   # plain values: one leaf
    assert diff({'a': [{}]}, {'a': [{}, {}]}) == ('a.1', resume._ABSENT, {})
    assert diff({'a': 1}, {'a': 1, 'c': None}) == ('c', resume._ABSENT, None)
    assert diff(1, 1.5) == ('', 1, 1.5) and diff(True, 1) == ('', True, 1)
