"""Figure-1-style pictures: clean image and prediction, perturbation, adversarial ones."""
import os.path as osp
from typing import Optional

import cv2
import numpy as np
import torch

from mmdag.fileio import write_atomic


def _to_bgr_uint8(x: torch.Tensor) -> np.ndarray:
    # images come in the loader's channel order (BGR for mmcv's loaders)
    return x.detach().cpu().clamp(0, 255).round().byte().permute(1, 2, 0).numpy().copy()


def _seg_map(pred: dict, shape) -> np.ndarray:
    """The predicted class map (uint8) resized to the frame ``shape`` it is drawn on."""
    seg = pred['pred_sem_seg']['data']
    seg = seg.detach().cpu().numpy().reshape(seg.shape[-2:]).astype(np.uint8)
    return cv2.resize(seg, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _kept_boxes(inst: dict, scale_factor, score_thr: float):
    """Boxes (scaled from original-image coordinates to the frame, float64),
    labels and scores of the detections scoring at least ``score_thr``."""
    keep = inst['scores'] >= score_thr
    sx, sy = scale_factor if scale_factor is not None else (1.0, 1.0)
    boxes = inst['bboxes'][keep].detach().cpu().double() * torch.tensor(
        [sx, sy, sx, sy], dtype=torch.float64)
    return boxes, inst['labels'][keep].cpu(), inst['scores'][keep].cpu()


def _colour_seg(pred: Optional[dict], shape, palette) -> np.ndarray:
    canvas = np.zeros((*shape, 3), np.uint8)
    if pred is None or 'pred_sem_seg' not in pred:
        return canvas
    seg = _seg_map(pred, shape)
    pal = np.array(palette if palette is not None else
                   [[(37 * i) % 256, (97 * i) % 256, (151 * i) % 256] for i in range(256)],
                   np.uint8)
    out = pal[np.minimum(seg, len(pal) - 1)][..., ::-1]  # palette is RGB
    return np.ascontiguousarray(out)


def _draw_boxes(img: np.ndarray, pred: Optional[dict], scale_factor, classes,
                score_thr: float = 0.3) -> np.ndarray:
    """Detections (original-image coordinates) drawn on the attacked frame."""
    out = img.copy()
    if pred is None or 'pred_instances' not in pred:
        return out
    boxes, labels, scores = _kept_boxes(pred['pred_instances'], scale_factor, score_thr)
    for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = tuple(int(c) for c in np.random.default_rng(label).integers(64, 256, 3))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        name = classes[label] if classes and label < len(classes) else str(label)
        cv2.putText(out, f'{name} {score:.2f}', (x1 + 1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3, colour, 1, cv2.LINE_AA)
    return out


def _prediction_panel(pred, image, shape, palette, scale_factor, classes, visualizer=None):
    """The prediction drawn on (detection) or over (segmentation) the image
    it was made on: by the config's visualizer (mmseg's SegLocalVisualizer,
    mmdet's DetLocalVisualizer) when there is one, else by hand."""
    if visualizer is not None and pred is not None and classes:
        drawn = _visualizer_panel(visualizer, pred, image, shape, palette, scale_factor,
                                  classes)
        if drawn is not None:
            return drawn
    if pred is not None and 'pred_instances' in pred:
        return _draw_boxes(image, pred, scale_factor, classes)
    return _colour_seg(pred, shape, palette)


def _visualizer_panel(visualizer, pred, image, shape, palette, scale_factor, classes,
                      score_thr: float = 0.3) -> Optional[np.ndarray]:
    """Draw with the stock visualizer's own drawing (RGB in, RGB out); None
    when it has no drawing for this prediction or fails."""
    from mmengine.structures import InstanceData, PixelData
    rgb = np.ascontiguousarray(image[..., ::-1])
    pal = [tuple(int(c) for c in p) for p in palette] if palette is not None else None
    try:
        if 'pred_instances' in pred and hasattr(visualizer, '_draw_instances'):
            boxes, labels, scores = _kept_boxes(pred['pred_instances'], scale_factor, score_thr)
            out = visualizer._draw_instances(
                rgb, InstanceData(bboxes=boxes.float(), labels=labels, scores=scores), classes,
                pal)
        elif 'pred_sem_seg' in pred and hasattr(visualizer, '_draw_sem_seg') and pal:
            seg = _seg_map(pred, shape).astype(np.int64)
            out = visualizer._draw_sem_seg(rgb, PixelData(data=torch.from_numpy(seg)[None]),
                                           classes, pal)
        else:
            return None
    except Exception:   # another visualizer's drawing: fall back to mmdag's own
        return None
    # the stock drawing is master_only: on the other ranks it returns None
    if not isinstance(out, np.ndarray) or out.shape != image.shape:
        return None
    return np.ascontiguousarray(out.astype(np.uint8)[..., ::-1])


def _title(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], 0)


def save_figure(path: str, clean: torch.Tensor, r: torch.Tensor, adv: torch.Tensor,
                orig_pred: Optional[dict], adv_pred: Optional[dict], palette=None,
                stats: Optional[dict] = None, scale_factor=None, classes=None,
                visualizer=None) -> np.ndarray:
    """Write one row: clean, clean prediction, r x10 (on grey), X + r, its prediction.

    Segmentation predictions are coloured with the dataset palette; detections
    (score >= 0.3) are drawn on the image they were made on; both by
    ``visualizer`` (the runner's) when it can draw them. Returns the row (BGR).
    """
    img = _to_bgr_uint8(clean)
    adv_img = _to_bgr_uint8(adv)
    shape = img.shape[:2]
    panels = [
        _title(img, 'image'),
        _title(_prediction_panel(orig_pred, img, shape, palette, scale_factor, classes,
                                 visualizer), 'prediction'),
        _title(_to_bgr_uint8(r * 10 + 128), 'perturbation x10'),
        _title(adv_img, 'adversarial image'),
        _title(_prediction_panel(adv_pred, adv_img, shape, palette, scale_factor, classes,
                                 visualizer), 'adversarial prediction'),
    ]
    sep = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row = panels[0]
    for p in panels[1:]:
        row = np.concatenate([row, sep, p], 1)
    if stats:
        foot = np.full((18, row.shape[1], 3), 255, np.uint8)
        text = (f"iters {stats['iters']}  p {stats['p']:.2e}  L-inf {stats['linf']:.1f}  "
                f"still correct {100 * stats['correct_frac']:.1f}%  ({stats['status']})")
        cv2.putText(foot, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        row = np.concatenate([row, foot], 0)
    ok, png = cv2.imencode(osp.splitext(path)[1] or '.png', row)
    if not ok:
        raise OSError(f'could not encode figure {path}')
    write_atomic(path, png.tobytes())   # a killed run leaves no half picture
    return row
