"""Work-arounds for bugs of the installed OpenMMLab packages that break a zoo
model's own ``test_step``, applied to one model (never to a library)."""
from typing import List


def repair_stock_model(model) -> List[str]:
    """Repair known bugs that make ``model``'s stock prediction crash; returns
    what was repaired (idempotent, in place).

    - mmdet 3.3.0 ``SSDHead`` never builds ``loss_cls`` (its loss is written
      inline), but ``BaseDenseHead._predict_by_feat_single`` reads
      ``self.loss_cls.custom_cls_channels``: every SSD prediction raises
      ``AttributeError``. The head gets ``loss_cls = None``, which that check
      reads as "no custom channels", what SSD means.
    """
    done = []
    for m in model.modules():
        if type(m).__name__ == 'SSDHead' and not hasattr(m, 'loss_cls'):
            m.loss_cls = None
            done.append(f'{type(m).__name__}.loss_cls = None')
    return done
