""""Still correct" rules that must equal what the stock prediction outputs."""
import torch

from mmdag.targets.queries import foreground_argmax_correct


def test_detr_softmax_rule_ignores_the_no_object_logit():
    # 3 classes + no-object; mmdet's DETRHead outputs argmax over the 3 classes
    logits = torch.tensor([[2.0, 1.0, 0.0, 9.0],     # no-object wins; output class 0
                           [1.0, 2.0, 0.0, -9.0],    # class 1 wins
                           [0.0, 0.5, 0.4, 9.0]])    # no-object wins; output class 1
    labels = torch.tensor([0, 0, 1])
    assert foreground_argmax_correct(logits, labels).tolist() == [True, False, True]
    empty = foreground_argmax_correct(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.numel() == 0
