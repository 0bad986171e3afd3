"""The ATTACKS registry: the hook, the Python API and tools/test.py build the
attack from it (``type`` defaults to 'DAG'), so another attack plugs in by
registering itself."""
import importlib.util
import os.path as osp
import sys

import pytest
import torch

from mmdag.attacks import DAG, attack_names, build_attack
from mmdag.engine import AttackHook
from mmdag.registry import ATTACKS
from conftest import ROOT
from test_other_attack_run import TOY  # a whole new attack in one file (the docs' example)


class Toy:
    """A stand-in attack: what the hook needs to hold one."""

    def __init__(self, steps: int = 1, seed: int = 0):
        self.steps, self.seed, self.clip_range = steps, seed, (0, 255)


@pytest.fixture
def toy_registered():
    ATTACKS.register_module('ToyAttack', module=Toy)
    yield
    ATTACKS._module_dict.pop('ToyAttack')


def test_dag_is_the_default_and_keeps_its_arguments():
    assert 'dag' in attack_names()
    default = build_attack({})
    assert type(default) is DAG and default.__dict__ == DAG().__dict__
    built = build_attack(dict(type='DAG', max_iters=3, gamma=2.0))
    assert type(built) is DAG and built.__dict__ == DAG(max_iters=3, gamma=2.0).__dict__
    with pytest.raises(KeyError):
        build_attack(dict(type='NoSuchAttack'))


def test_the_hook_builds_a_registered_attack(toy_registered):
    assert type(AttackHook(attack=dict(max_iters=2)).primary) is DAG
    hook = AttackHook(attack=dict(type='ToyAttack', steps=4))
    assert type(hook.primary) is Toy and hook.primary.steps == 4


def test_tools_test_offers_the_registered_attacks(toy_registered):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    spec = importlib.util.spec_from_file_location('tools_test', osp.join(ROOT, 'tools', 'test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.parse_args(['c.py', 'k.pth', '--attack', 'toyattack']).attack == 'toyattack'
    assert tool.parse_args(['c.py', 'k.pth', '--attack', 'dag']).attack == 'dag'
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', 'k.pth', '--attack', 'nope'])


def test_a_new_attack_is_one_file(tmp_path, monkeypatch):
    """Write one file, import it: the attack is built by name and attacks."""
    from mmdag.attacks import TargetSet

    (tmp_path / 'one_file_fgsm.py').write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module('one_file_fgsm')
        assert 'toyfgsm' in attack_names()
        attack = build_attack(dict(type='ToyFGSM', epsilon=4))

        class Linear(TargetSet):   # a per-pixel linear classifier over 3 classes
            w = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]) / 64

            def __init__(self, images):
                super().__init__([self.logits(images, [0])[0].argmax(1)], num_classes=3)

            def logits(self, images, indices):
                return [x.flatten(1).t() @ self.w - 1.0 for x in images]

        g = torch.Generator().manual_seed(0)
        x = torch.rand(3, 6, 6, generator=g) * 255
        targets = Linear([x])
        result = attack([x], targets)
        r = result.perturbations[0]
        assert r.abs().max() <= 4 + 1e-4 and r.abs().max() > 3.9   # one step to the budget
        loss = torch.nn.functional.cross_entropy
        before = loss(targets.logits([x], [0])[0], targets.labels[0])
        after = loss(targets.logits([x + r], [0])[0], targets.labels[0])
        assert after > before   # the step ascends the loss it names
    finally:
        ATTACKS._module_dict.pop('ToyFGSM', None)
        sys.modules.pop('one_file_fgsm', None)
