"""ORIG and PERM are predicted under the test loop's precision; the attack in float32."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger

from mmdag.contract import VARIANTS_FIELD
from mmdag.engine import AttackHook


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled('cpu') or torch.is_autocast_enabled('cuda')
    except TypeError:   # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled() or torch.is_autocast_enabled()


def _runner(model, fp16, work_dir):
    return SimpleNamespace(model=model, test_loop=SimpleNamespace(fp16=fp16), work_dir=work_dir,
                           logger=MMLogger.get_instance('mmdag_precision_test'),
                           test_dataloader=[None], cfg={},
                           message_hub=MessageHub.get_instance('mmdag_precision_test'))


@pytest.mark.parametrize('fp16', [False, True])
def test_orig_and_perm_follow_the_loops_precision(fp16, tmp_path):
    from test_segmentation import TINY, build, make_batch
    model = build(TINY)
    calls, in_predict = [], []
    stock = model.test_step

    def spy(data):
        calls.append(_autocast_on())
        in_predict.append(True)
        try:
            return stock(data)
        finally:
            in_predict.pop()

    model.test_step = spy
    seen_in_attack = []
    stock_forward = model.inference

    def spy_inference(*args, **kwargs):
        if not in_predict:   # a forward of the attack, not of a prediction
            seen_in_attack.append(_autocast_on())
        return stock_forward(*args, **kwargs)

    model.inference = spy_inference
    hook = AttackHook(attack=dict(max_iters=1))
    runner = _runner(model, fp16, str(tmp_path))
    hook.before_test(runner)
    assert model.test_step is not spy   # the loop's forward now goes by canvas groups
    batch = make_batch(num=2)
    hook.before_test_iter(runner, 0, batch)
    hook.after_test(runner)
    assert model.test_step is spy        # restored
    assert calls == [fp16, fp16, fp16]   # orig, perm, advr_uint8
    # the attack's own forwards (targets and DAG steps) stay float32
    assert seen_in_attack and not any(seen_in_attack)
    assert all(VARIANTS_FIELD in s for s in batch['data_samples'])
    assert not osp.exists(osp.join(str(tmp_path), 'attack_report.json'))
