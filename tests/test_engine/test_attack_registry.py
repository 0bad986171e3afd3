"""The ATTACKS registry: the hook, the Python API and tools/test.py build the
attack from it (``type`` defaults to 'DAG'), so another attack plugs in by
registering itself."""
import importlib.util
import os.path as osp
import sys

import pytest

from conftest import ROOT

from mmdag.attacks import DAG
from mmdag.engine import DAGAttackHook
from mmdag.registry import ATTACKS, attack_names, build_attack


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
    assert type(DAGAttackHook(attack=dict(max_iters=2)).dag) is DAG
    hook = DAGAttackHook(attack=dict(type='ToyAttack', steps=4))
    assert type(hook.dag) is Toy and hook.dag.steps == 4


def test_tools_test_offers_the_registered_attacks(toy_registered):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    spec = importlib.util.spec_from_file_location('tools_test', osp.join(ROOT, 'tools', 'test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.parse_args(['c.py', 'k.pth', '--attack', 'toyattack']).attack == 'toyattack'
    assert tool.parse_args(['c.py', 'k.pth', '--attack', 'dag']).attack == 'dag'
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', 'k.pth', '--attack', 'nope'])
