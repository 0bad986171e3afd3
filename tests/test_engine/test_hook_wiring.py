"""An attack run's hooks: written into the config's ``custom_hooks`` by
``add_attack_to_config``, added by the attack hook for a config that lists
only it, and the settings given on the attack hook passed on to them."""
from types import SimpleNamespace

from mmengine.config import Config

from mmdag.apis import add_attack_to_config
from mmdag.engine import (AttackFigureHook, AttackHook, AttackReportHook, AttackResumeHook,
                          CheckpointCheckHook)
from mmdag.engine.figure_hook import resumes

EVALUATOR = dict(type='IoUMetric')


def _types(cfg):
    return [h['type'] for h in cfg.custom_hooks]


def test_the_config_lists_every_hook_with_its_own_settings():
    cfg = add_attack_to_config(Config(dict(test_evaluator=EVALUATOR)), dict(max_iters=3),
                               dict(num_figures=2, resume=True, records=None, log_interval=5))
    assert _types(cfg) == ['mmdag.AttackHook', 'mmdag.AttackFigureHook', 'mmdag.AttackReportHook',
                           'mmdag.AttackResumeHook', 'mmdag.CheckpointCheckHook']
    attack, figures, report, resume, _ = cfg.custom_hooks
    assert dict(attack) == dict(type='mmdag.AttackHook', attack=dict(max_iters=3), log_interval=5)
    assert figures['num_figures'] == 2 and resume['resume'] is True
    assert dict(report) == dict(type='mmdag.AttackReportHook', records=None)
    # no pictures asked: no figure hook; a second call adds nothing
    cfg = add_attack_to_config(Config(dict(test_evaluator=EVALUATOR)))
    assert 'mmdag.AttackFigureHook' not in _types(cfg)
    before = _types(cfg)
    assert _types(add_attack_to_config(cfg, hook_options=dict(resume=True))) == before
    assert cfg.custom_hooks[2]['resume'] is True
    # the hooks of an mmdag config are found, the settings go to them
    cfg = Config.fromfile('configs/demo/fcn_tiny_synthetic-voc_dag.py')
    before = _types(cfg)
    assert before[1:4] == ['mmdag.AttackFigureHook', 'mmdag.AttackReportHook',
                           'mmdag.AttackResumeHook']
    add_attack_to_config(cfg, hook_options=dict(num_figures=0))
    assert _types(cfg) == before and cfg.custom_hooks[1]['num_figures'] == 0


class _Runner(SimpleNamespace):
    def register_hook(self, hook):
        self.hooks.append(hook)


def test_a_config_listing_only_the_attack_hook_gets_the_others():
    runner = _Runner(hooks=[])
    hook = AttackHook(attack=dict(max_iters=1))
    runner.hooks.append(hook)
    hook.before_run(runner)
    # the report and resume hooks always, the figure hook only for pictures
    assert [type(h) for h in runner.hooks] == [AttackHook, AttackReportHook, AttackResumeHook]
    assert runner.hooks[1].report == 'attack_report.json' and not runner.hooks[2].resume
    runner = _Runner(hooks=[])
    hook = AttackHook(attack=dict(max_iters=1), num_figures=2, report=None, resume=True)
    runner.hooks.append(hook)
    hook.before_run(runner)
    assert [type(h) for h in runner.hooks] == [
        AttackHook, AttackFigureHook, AttackReportHook, AttackResumeHook]
    assert runner.hooks[1].num_figures == 2 and runner.hooks[2].report is None
    assert resumes(runner)


def test_settings_given_on_the_attack_hook_reach_the_listed_hooks():
    # --cfg-options custom_hooks.0.num_figures=0 on a config listing them all
    figures, report = AttackFigureHook(num_figures=4), AttackReportHook()
    resume, check = AttackResumeHook(), CheckpointCheckHook()
    attack = AttackHook(attack=dict(max_iters=1), num_figures=0, resume=True)
    runner = _Runner(hooks=[attack, figures, report, resume, check])
    attack.before_run(runner)
    assert runner.hooks == [attack, figures, report, resume, check]   # none added
    assert figures.num_figures == 0 and resume.resume is True and resumes(runner)
    assert report.report == 'attack_report.json'   # not given: the report hook's own
