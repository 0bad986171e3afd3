"""mmseg MaskFormer / Mask2Former: DAG attacks the log of their class scores.

Their decode heads output ``sum_q softmax(cls_q)[c] * sigmoid(mask_q)``,
non-negative scores, not logits. The adapter takes their log: "still
correct" must equal the stock prediction against the ground truth.
"""
import pytest
import torch
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

from mmdag.apis import attack_batch
from mmdag.engine.step import attack_mode
from mmdag.targets import SegmentationTargets, build_targets
from mmdag.targets.segmentation import mask_classification
from conftest import zoo_config

CONFIGS = {
    'maskformer': 'mmseg::maskformer/maskformer_r50-d32_8xb2-160k_ade20k-512x512.py',
    'mask2former': 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
}
H, W = 64, 96


def build(name):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = zoo_config(CONFIGS[name]).model
    cfg.pretrained = None
    cfg.backbone.init_cfg = None
    cfg.backbone.depth = 18      # same decode head, smaller backbone
    cfg.decode_head.in_channels = [64, 128, 256, 512]
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg)).eval()


def batch():
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(3, H, W, generator=g) * 255).round().to(torch.uint8)
    s = SegDataSample(metainfo=dict(ori_shape=(H, W), img_shape=(H, W), pad_shape=(H, W),
                                    img_path='mask_cls.jpg'))
    gt = torch.zeros(1, H, W, dtype=torch.long)
    gt[:, 16:48, 24:72] = 1
    s.gt_sem_seg = PixelData(data=gt)
    return dict(inputs=[img], data_samples=[s])


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_correct_is_the_stock_prediction(name):
    model = build(name)
    assert mask_classification(model)
    b = batch()
    with torch.no_grad():
        stock = model.test_step(b)[0].pred_sem_seg.data[0]
    # random weights get (almost) no pixel of a drawn label right, and a test
    # of "correct" on all-False vectors proves nothing: the labels are the
    # stock prediction on the bottom half and another class on the top half
    num_classes = model.decode_head.num_classes
    gt = stock.clone()
    gt[:H // 2] = (stock[:H // 2] + 1) % num_classes
    b['data_samples'][0].gt_sem_seg = PixelData(data=gt[None])
    image = b['inputs'][0].float()
    with attack_mode(model):
        targets = build_targets(model, [image], b['data_samples'])
        assert isinstance(targets, SegmentationTargets)
        # the budgeted attacks' cross-entropy normalises the log scores
        assert targets.activation == 'log_scores'
        with torch.no_grad():
            z = targets.logits([image], [0])[0]
    assert torch.isfinite(z).all()
    expected = (stock.flatten() == gt.flatten())[targets.index[0]]
    assert expected.any() and (~expected).any()
    got = targets.correct(z, targets.labels[0])
    assert torch.equal(got, expected)
    result, _ = attack_batch(model, b, attack=dict(max_iters=2))
    s = result.stats[0]
    assert s['iters'] == 2 and s['num_correct'] == int(expected.sum()) and s['linf'] > 0
