"""TOG's vanishing and fabrication losses, transcribed in PyTorch from the
authors' code (github git-disl/TOG) line by line, as the oracle of
``test_tog_oracle.py``. Nothing here imports mmdag.

Each function takes the raw outputs in the layout of the authors' model and
keeps their reductions, label conventions and signs:

- ``models/frcnn.py`` (``FRCNN.forward``, simple-faster-rcnn-pytorch):
  ``rpn_score [N_anchors, 2]`` (background, object), ``roi_score
  [N_rois, C + 1]`` (background first);
- ``models/yolov3.py`` (``build_object_vanishing_loss``, Keras): the three
  raw output maps ``[B, H, W, A * (5 + C)]`` (channels last);
- ``models/ssd.py`` (``build_object_vanishing_loss``, Keras): the class part
  of the predictions, ``mbox_conf [B, N_boxes, C + 1]`` (background first).

The attack (``tog/attacks.py``) descends every one of these losses.
"""
import torch
from torch import nn
from torch.nn import functional as F


# ------------------------------------------------------------- models/frcnn.py
def frcnn_object_vanishing_loss(rpn_score, roi_score):
    """``object_vanishing_loss = F.cross_entropy(rpn_score, t.zeros_like(gt_rpn_label))
    + nn.CrossEntropyLoss()(roi_score, t.zeros_like(gt_roi_label))``."""
    gt_rpn_label = torch.zeros(rpn_score.shape[0], dtype=torch.long)
    gt_roi_label = torch.zeros(roi_score.shape[0], dtype=torch.long)
    return F.cross_entropy(rpn_score, torch.zeros_like(gt_rpn_label)) + \
        nn.CrossEntropyLoss()(roi_score, torch.zeros_like(gt_roi_label))


def frcnn_object_fabrication_loss(rpn_score, roi_score):
    """``object_fabrication_loss = F.cross_entropy(rpn_score, t.ones_like(gt_rpn_label))
    - nn.CrossEntropyLoss()(roi_score, t.argmax(roi_score, dim=1))``."""
    gt_rpn_label = torch.zeros(rpn_score.shape[0], dtype=torch.long)
    return F.cross_entropy(rpn_score, torch.ones_like(gt_rpn_label)) - \
        nn.CrossEntropyLoss()(roi_score, torch.argmax(roi_score, dim=1))


# ------------------------------------------------------------ models/yolov3.py
def keras_binary_crossentropy_from_logits(target, output):
    """``K.binary_crossentropy(target, output, from_logits=True)``: TF's
    ``sigmoid_cross_entropy_with_logits``, ``max(x, 0) - x * z + log(1 + exp(-|x|))``."""
    return torch.clamp(output, min=0) - output * target + torch.log1p(torch.exp(-output.abs()))


def yolo_head_raw_pred(feats, num_anchors, num_classes):
    """``yolo_head(..., calc_loss=True)``'s ``raw_pred``: ``K.reshape(feats,
    [-1, grid_shape[0], grid_shape[1], num_anchors, num_classes + 5])``."""
    b, h, w, _ = feats.shape
    return feats.reshape(b, h, w, num_anchors, num_classes + 5)


def yolov3_object_vanishing_loss(outputs, num_classes, num_anchors=3, object_mask_value=0.0):
    """``build_object_vanishing_loss``: for each of the three layers,
    ``K.sum(K.binary_crossentropy(object_mask, raw_pred[..., 4:5], from_logits=True))``
    with ``object_mask`` the encoded labels of no detection (all 0);
    ``compute_object_fabrication_gradient`` feeds ``object_mask = 1`` to the
    same graph (``object_mask_value=1``)."""
    confidence_loss = 0
    for layer in range(len(outputs)):
        raw_pred = yolo_head_raw_pred(outputs[layer], num_anchors, num_classes)
        object_mask = torch.full_like(raw_pred[..., 4:5], object_mask_value)
        confidence_loss = confidence_loss + torch.sum(
            keras_binary_crossentropy_from_logits(object_mask, raw_pred[..., 4:5]))
    return confidence_loss


def yolov3_object_fabrication_loss(outputs, num_classes, num_anchors=3):
    """``build_object_fabrication_loss`` is the vanishing graph, fed with
    ``encoded_labels[l][..., 4] = 1``."""
    return yolov3_object_vanishing_loss(outputs, num_classes, num_anchors, object_mask_value=1.0)


# --------------------------------------------------------------- models/ssd.py
def tf_softmax_cross_entropy_with_logits(labels, logits):
    """``tf.nn.softmax_cross_entropy_with_logits``: ``-sum(labels * log_softmax(logits))``."""
    return -(labels * F.log_softmax(logits, dim=-1)).sum(-1)


def ssd_object_vanishing_loss(mbox_conf):
    """``tf.reduce_mean(softmax_cross_entropy_with_logits(logits=conf, labels=encoded))``,
    where ``SSDInputEncoder`` of no detection marks every box background:
    ``y_encoded[:, :, background_id] = 1`` with ``background_id = 0``."""
    labels = torch.zeros_like(mbox_conf)
    labels[..., 0] = 1
    return torch.mean(tf_softmax_cross_entropy_with_logits(labels, mbox_conf))


def ssd_object_fabrication_loss(mbox_conf):
    """``build_object_fabrication_loss = -build_object_vanishing_loss()``."""
    return -ssd_object_vanishing_loss(mbox_conf)
