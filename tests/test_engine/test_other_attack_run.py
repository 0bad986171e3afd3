"""An attack that is not DAG, registered by a user's module, runs through
everything DAG runs through: tools/test.py, the metric, the records, the
report, the pictures and the resume check. And the pictures cost no forward
of their own: the test loop's ADVR predictions draw them."""
import json
import os
import os.path as osp
import textwrap

import pytest

from conftest import ROOT, TINY, run_tool

TOY = textwrap.dedent('''
    """A one-step FGSM on the per-target cross-entropy: a user's attack."""
    import torch.nn.functional as F

    from mmdag.attacks import IterativeAttack
    from mmdag.registry import ATTACKS


    @ATTACKS.register_module()
    class ToyFGSM(IterativeAttack):

        def __init__(self, epsilon=8.0, max_iters=1, seed=0):
            super().__init__(max_iters=max_iters, epsilon=epsilon, seed=seed)

        def loss(self, m, logits, labels, state, active, attacked):
            return (F.cross_entropy(logits, labels, reduction='none') * attacked).sum()

        def update(self, m, x0, r, grads):
            return [self.project(x, x + d + self.epsilon * g.sign())
                    for x, d, g in zip(x0, r, grads)]
''')


def _user_files(tmp_path):
    (tmp_path / 'toy_fgsm.py').write_text(TOY)
    cfg = tmp_path / 'fcn_toy.py'
    cfg.write_text(f"_base_ = [{TINY!r}]\n"
                   "custom_imports = dict(imports=['mmdag', 'toy_fgsm'], "
                   "allow_failed_imports=False)\n")
    return str(cfg)


@pytest.mark.slow   # a plug-in attack through tools/test.py: about 20 s on a CPU
def test_a_registered_attack_runs_through_tools_test(tiny_voc, trained_seg_checkpoint, tmp_path):
    cfg = _user_files(tmp_path)
    wd = str(tmp_path / 'wd')
    env = dict(PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    common = [cfg, trained_seg_checkpoint, '--work-dir', wd, '--cfg-options',
              f'test_dataloader.dataset.data_root={tiny_voc}']
    run_tool(['tools/test.py', *common, '--attack', 'dag', '--attack-options', 'type=ToyFGSM',
              'epsilon=6', '--num-figures', '2'], env=env)
    rep = json.load(open(osp.join(wd, 'attack_report.json')))
    assert rep['settings']['attack']['type'] == 'ToyFGSM'
    assert rep['settings']['attack']['epsilon'] == 6
    assert set(rep['variants']) == {'orig', 'advr', 'perm', 'advr_uint8'}
    assert all('mIoU' in v for v in rep['variants'].values())
    records = [json.loads(line) for line in open(osp.join(wd, 'attack_records.jsonl'))]
    assert len(records) == rep['attack']['images'] == 6
    attacked = [r for r in records if r['status'] not in ('no_targets', 'none_correct')]
    assert attacked
    for r in attacked:
        # one step of the full budget: the perturbation is at the budget, not over
        assert r['iters'] == 1 and r['backwards'] == 1
        assert 5.99 <= r['linf'] <= 6.0 + 1e-4
    # what it achieved: one FGSM step at 6/255 flips targets of the trained model
    assert rep['attack']['target_success'] > 0
    assert len([f for f in os.listdir(osp.join(wd, 'figures')) if f.endswith('.png')]) == 2
    # resume compares the attack's settings, its type included
    res = run_tool(['tools/test.py', *common, '--attack', 'dag', '--attack-options',
                    'type=ToyFGSM', 'epsilon=3', '--resume'], env=env, check=False)
    assert res.returncode != 0
    assert 'epsilon: 6' in res.stdout + res.stderr and 'now 3' in res.stdout + res.stderr


def test_pictures_are_drawn_from_the_loops_predictions(tiny_voc, random_seg_checkpoint, tmp_path):
    """With pictures the model predicts exactly as often as without: the
    adversarial prediction in a picture is the one the test loop made."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdag.apis import add_attack_to_config

    counts = {}
    for figures in (0, 3):
        cfg = Config.fromfile(TINY)
        cfg.test_dataloader.dataset.data_root = tiny_voc
        cfg.test_dataloader.batch_size = 2
        cfg.work_dir = str(tmp_path / f'wd{figures}')
        cfg.load_from = random_seg_checkpoint
        add_attack_to_config(cfg, dict(max_iters=1), dict(num_figures=figures, records=None))
        runner = Runner.from_cfg(cfg)
        model = runner.model
        calls = []
        predict = model.predict
        model.predict = lambda *a, **k: calls.append(len(a[0])) or predict(*a, **k)
        runner.test()
        counts[figures] = len(calls)
        pictures = os.listdir(osp.join(cfg.work_dir, 'figures')) if figures else []
        assert len(pictures) == figures
    # per batch: ORIG, PERM, ADVR rounded to 8 bits and the loop's ADVR
    assert counts[3] == counts[0] == 3 * 4
