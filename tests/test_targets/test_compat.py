"""Repairs of installed-package bugs that break a zoo model's stock test_step."""
import torch

from mmdag.benchmark import coverage as cov
from mmdag.compat import repair_stock_model


def test_ssd_predicts_after_repair():
    # mmdet 3.3.0: SSDHead has no loss_cls, which every prediction reads
    model = cov.build_model('mmdet', cov.load_config('mmdet', 'ssd/ssd300_coco.py'))
    data = cov.make_batch('mmdet', (320, 320))
    assert repair_stock_model(model) == []   # build_model already repaired it
    del model.bbox_head.loss_cls
    broken = True
    try:
        with torch.no_grad():
            model.test_step(data)
        broken = False
    except AttributeError as e:
        assert 'loss_cls' in str(e)
    done = repair_stock_model(model)
    assert done == (['SSDHead.loss_cls = None'] if broken else [])
    with torch.no_grad():
        pred = model.test_step(data)[0].pred_instances
    assert len(pred) > 0 and pred.scores.isfinite().all()
