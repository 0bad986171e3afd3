"""The per-head spec registry of the one-stage adapter, and the helpers the
head specs share.

Each supported dense head gets a :class:`HeadSpec` that reads what that head
really computes, instead of guessing the layout of ``get_targets``' return:

* ``assign(head, ctx)``: the head's own assignment of priors (anchors,
  points, grid cells, heatmap positions) to ground truth on the clean image,
  through the same target code its ``loss_by_feat`` calls; one label per
  prior, -1 where the prior is not a target.
* ``cls_maps(head, x)``: the head's class logit maps ``[B, A * C, H, W]`` per
  level, where the flat prior order (levels, rows, columns, base priors) is
  the order of ``assign``'s labels. Heads whose forward returns scores
  (TOOD's geometric mean of two sigmoids, CenterNet's sigmoid heatmap) give
  their logits here.

A spec is found through the head's class hierarchy (the most specific class
registered wins), so subclasses that change neither targets nor outputs
(e.g. ``RetinaSepBNHead``, ``NASFCOSHead``, ``RTMDetSepBNHead``) are covered
by their parent's spec. The specs themselves live in
:mod:`mmdag.targets.dense_heads` (anchor and point heads) and
:mod:`mmdag.targets.grid_heads` (heatmap, SOLO and YOLOv3 heads).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor


@dataclass
class AssignContext:
    """What an ``assign`` function may read, for one image."""
    featmap_sizes: list        # per level (H, W) of the class maps
    meta: dict                 # the image's metainfo after the data preprocessor
    gt: object                 # InstanceData: bboxes, labels (and masks) in the input frame
    outs: tuple                # the head's clean outputs for this image (batch of 1)
    device: torch.device


@dataclass
class HeadSpec:
    name: str
    assign: Callable
    cls_maps: Optional[Callable] = None     # default: ``head(x)[0]``
    attacked: str = ''                      # what is attacked, for the docs
    sigmoid: Optional[bool] = None          # default: ``head.use_sigmoid_cls``


_SPECS: Dict[str, HeadSpec] = {}


def register(*class_names: str, **kwargs):
    def deco(fn):
        spec = HeadSpec(name=class_names[0], assign=fn, **kwargs)
        for n in class_names:
            _SPECS[n] = spec
        return fn
    return deco


def find_spec(head) -> Optional[HeadSpec]:
    """The spec of the most specific registered class of ``head``, or None."""
    for cls in type(head).__mro__:
        if cls.__name__ in _SPECS:
            return _SPECS[cls.__name__]
    return None


def supported_heads() -> List[str]:
    return sorted({s.name for s in _SPECS.values()})


def cls_maps(spec: HeadSpec, head, x) -> List[Tensor]:
    """The head's class logit maps ``[B, A * C, H, W]`` per level."""
    return list(spec.cls_maps(head, x) if spec.cls_maps else head(x)[0])


def flat_logits(maps: List[Tensor], i: int, num_logits: int) -> Tensor:
    """Class logits ``[num_priors, C]`` of image ``i`` in prior order."""
    return torch.cat([m[i].permute(1, 2, 0).reshape(-1, num_logits) for m in maps])


# ------------------------------------------------- helpers of the head specs
def finish(head, labels: Tensor) -> Tensor:
    """-1 for every prior that is not matched to a foreground class."""
    labels = labels.long()
    foreground = (labels >= 0) & (labels < head.num_classes)
    return torch.where(foreground, labels, torch.full_like(labels, -1))


def level_labels(levels: List[Tensor]) -> Tensor:
    """Per-level label tensors (any shape) -> one flat tensor in prior order."""
    return torch.cat([lv.reshape(-1) for lv in levels])
