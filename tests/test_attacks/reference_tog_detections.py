"""TOG's untargeted and mislabel attacks transcribed from the authors' code
(github git-disl/TOG), the oracle of test_tog_detections.py.

- :func:`generate_attack_targets`: ``attack_utils/target_utils.py`` as it
  is (numpy; scipy's softmax written out). A TOG detection row is
  ``[class, confidence, class scores..., xmin, ymin, xmax, ymax]``.
- :func:`tog_loop`: the loop shared by ``tog_untargeted`` and
  ``tog_mislabeling`` in ``tog/attacks.py``, with the random start ``eta``
  passed in (TOG draws it with ``np.random.uniform``) and the valid range's
  upper end a parameter (TOG's images are on 0..1; ``upper=255`` with
  ``eps=8, eps_iter=2`` is the same attack on 0..255).
- :func:`untargeted_loss` / :func:`mislabeling_loss`: ``models/frcnn.py``'s
  ``object_untargeted_loss = -(rpn_loc + rpn_cls + roi_loc + roi_cls)`` and
  ``object_mislabeling_loss = -object_untargeted_loss`` (``yolov3.py`` and
  ``ssd.py`` alike: minus, then plus, the training loss), on the terms of the
  detector's training loss dict (every key with ``loss``, lists summed).
  The gradient function the loop takes is that of the loss, which TOG
  descends (``x_adv -= eps_iter * sign(grad)``).
"""
import numpy as np


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def generate_attack_targets(detections, mode, confidence_threshold, class_id=None):
    """``attack_utils/target_utils.py`` (scipy's softmax written out)."""
    assert mode.lower() in ['ml', 'll'], '`mode` should be one of `ML` or `LL`.'
    detections_copy = detections.copy()
    pred_logits = detections_copy[:, 2:-4]

    if mode.lower() == 'll':
        if pred_logits.shape[1] % 10 == 1:  # ignore index 1 if it is referring to background
            pred_logits[:, 0] = float('inf')
        target_class_id = np.expand_dims(np.argmin(pred_logits, axis=-1), axis=1)
    else:
        pred_logits[_softmax(pred_logits, axis=-1) > confidence_threshold] = float('-inf')
        if pred_logits.shape[1] % 10 == 1:  # ignore index 1 if it is referring to background
            pred_logits[:, 0] = float('-inf')
        target_class_id = np.expand_dims(np.argmax(pred_logits, axis=-1), axis=1)

    if class_id is not None:
        if pred_logits.shape[1] % 10 == 1:  # account for the background class in SSD and FRCNN
            class_id += 1
        source_class_id = detections_copy[:, [0]]
        mask = detections_copy[:, [0]] == class_id
        if np.sum(mask) == 0:
            return None
        target_class_id = np.where(mask, target_class_id, source_class_id)

    target_conf = np.full_like(target_class_id, fill_value=1.)
    detections_target = np.concatenate([target_class_id, target_conf, detections[:, 2:]], axis=-1)
    return detections_target


def tog_loop(x_query, eta, grad_fn, n_iter=10, eps=8 / 255., eps_iter=2 / 255., upper=1.0):
    """The loop of ``tog_untargeted`` / ``tog_mislabeling`` from the start
    ``eta``; ``grad_fn(x_adv)`` is the gradient of the loss TOG descends."""
    x_adv = np.clip(x_query + eta, 0.0, upper)
    for _ in range(n_iter):
        grad = grad_fn(x_adv)
        signed_grad = np.sign(grad)
        x_adv -= eps_iter * signed_grad
        eta = np.clip(x_adv - x_query, -eps, eps)
        x_adv = np.clip(x_query + eta, 0.0, upper)
    return x_adv


def training_loss(losses):
    """The sum of a detector's training loss terms (every key with ``loss``;
    list entries summed, each term's mean)."""
    total = 0
    for key, value in losses.items():
        if 'loss' in key:
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                total = total + v.mean()
    return total


def untargeted_loss(losses):
    """``object_untargeted_loss``: minus the training loss (descended)."""
    return -training_loss(losses)


def mislabeling_loss(losses):
    """``object_mislabeling_loss``: the training loss towards the relabelled
    detections (descended)."""
    return training_loss(losses)
