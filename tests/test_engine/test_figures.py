"""Figure-1 pictures: prediction panels drawn by the config's visualizer, else by hand."""
import numpy as np
import torch

from mmdag.engine.figures import _prediction_panel, save_figure

CLASSES = ('background', 'cat', 'dog')
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def seg_pred(h=12, w=16):
    seg = torch.zeros(1, h, w, dtype=torch.long)
    seg[:, :, w // 2:] = 1
    return {'pred_sem_seg': {'data': seg}}


def det_pred():
    return {'pred_instances': {'bboxes': torch.tensor([[2., 2., 10., 8.], [0., 0., 4., 4.]]),
                               'scores': torch.tensor([0.9, 0.1]),
                               'labels': torch.tensor([1, 2])}}


def test_stock_visualizers_draw_the_panels():
    from mmdet.visualization import DetLocalVisualizer
    from mmseg.visualization import SegLocalVisualizer
    img = np.full((12, 16, 3), 100, np.uint8)
    seg_vis = SegLocalVisualizer(name='seg_panel_test', alpha=1.0)
    out = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, seg_vis)
    # alpha 1: the palette's colours (RGB) come back as BGR, class 1 on the right half
    assert out.shape == img.shape and tuple(out[6, 14]) == (0, 0, 255)
    hand = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, None)
    assert tuple(hand[6, 14]) == (0, 0, 255) and tuple(hand[6, 2]) == (0, 0, 0)
    det_vis = DetLocalVisualizer(name='det_panel_test')
    drawn = _prediction_panel(det_pred(), img, (12, 16), PALETTE, (1.0, 1.0), CLASSES, det_vis)
    assert drawn.shape == img.shape and (drawn != img).any()


def test_other_visualizers_fall_back_to_mmdag_drawing(tmp_path):
    from mmengine.visualization import Visualizer
    img = np.full((12, 16, 3), 100, np.uint8)
    vis = Visualizer(name='plain_panel_test')
    out = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, vis)
    hand = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, None)
    assert (out == hand).all()
    x = torch.full((3, 12, 16), 100.)
    row = save_figure(str(tmp_path / 'f.png'), x, torch.zeros_like(x), x, seg_pred(),
                      seg_pred(), PALETTE, None, None, CLASSES, vis)
    assert row.shape[1] == 5 * 16 + 4 * 4 and (tmp_path / 'f.png').is_file()


def test_other_ranks_draw_by_hand(monkeypatch):
    """mmengine's drawing is master_only: on rank 1 mmdet's returns None (mmseg's
    blends with numpy and still returns its picture)."""
    import mmengine.dist.utils
    from mmdet.visualization import DetLocalVisualizer
    from mmseg.visualization import SegLocalVisualizer
    seg_vis = SegLocalVisualizer(name='seg_rank1_test')
    det_vis = DetLocalVisualizer(name='det_rank1_test')
    img = np.full((12, 16, 3), 100, np.uint8)
    seg_main = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, seg_vis)
    monkeypatch.setattr(mmengine.dist.utils, 'is_main_process', lambda *a, **k: False)
    seg = _prediction_panel(seg_pred(), img, (12, 16), PALETTE, None, CLASSES, seg_vis)
    assert (seg == seg_main).all()
    det = _prediction_panel(det_pred(), img, (12, 16), PALETTE, (1.0, 1.0), CLASSES, det_vis)
    hand = _prediction_panel(det_pred(), img, (12, 16), PALETTE, (1.0, 1.0), CLASSES, None)
    assert (det == hand).all()
