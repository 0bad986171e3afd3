"""TIDE's breakdown as a run reports it: AttackMetric, wrapping mmdet's VOC
metric, fed per image as the attack hook feeds it, reports
``tide/<variant>/...`` equal to the authors' ``tidecv`` on the same
detections, for ORIG and ADVR, and the report's section and table."""
import numpy as np
import torch
from mmengine.structures import InstanceData

from mmdag.contract import STATS_FIELD, VARIANTS_FIELD
from mmdag.evaluation import AttackMetric
from mmdag.summary import format_tide, tide_section
from test_tide import ERRORS, SPECIAL_ERRORS, random_set, tidecv_breakdown

TOL = 1e-9   # float64 sums (test_tide.py: TOL)


def _instances(boxes, labels, scores=None):
    out = InstanceData(bboxes=torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
                       labels=torch.as_tensor(np.asarray(labels, np.int64)))
    if scores is not None:
        out.scores = torch.as_tensor(np.asarray(scores, np.float32))
    return out


def test_dag_metric_reports_tidecv_figures_per_variant():
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')   # the wrapped metric is mmdet's
    orig, advr = random_set(5, images=12, ignore=False), random_set(6, images=12, ignore=False)
    for a, o in zip(advr, orig):   # the same objects, other detections
        a['gt_boxes'], a['gt_labels'] = o['gt_boxes'], o['gt_labels']
    # the metric reads float32 boxes and scores, as a detector returns them
    for im in orig + advr:
        for k in ('gt_boxes', 'det_boxes', 'det_scores'):
            im[k] = np.asarray(im[k], np.float32).astype(np.float64)
    metric = AttackMetric(metric=dict(type='mmdet.VOCMetric'), variants=['orig', 'advr'],
                          with_stats=False)
    metric.configure(['orig', 'advr'])   # what the attack hook does first
    metric.dataset_meta = dict(classes=('a', 'b', 'c', 'd'))
    samples = []
    for o, a in zip(orig, advr):
        samples.append({
            'gt_instances': _instances(o['gt_boxes'], o['gt_labels']),
            'ignored_instances': _instances(np.zeros((0, 4)), []),
            'pred_instances': _instances(a['det_boxes'], a['det_labels'], a['det_scores']),
            'img_id': len(samples), 'ori_shape': (500, 500),
            STATS_FIELD: {}, VARIANTS_FIELD: {'orig': {'pred_instances': _instances(
                o['det_boxes'], o['det_labels'], o['det_scores'])}}})
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    for variant, images in (('orig', orig), ('advr', advr)):
        theirs = tidecv_breakdown(images)
        for k in ['AP'] + [f'dAP/{e}' for e in ERRORS + SPECIAL_ERRORS]:
            assert abs(out[f'tide/{variant}/{k}'] - theirs[k]) <= TOL, (variant, k)
        for e in ERRORS:
            assert out[f'tide/{variant}/count/{e}'] == theirs[f'count/{e}'], (variant, e)
    # an attack that changes the detections changes TIDE's figures
    assert out['tide/orig/AP'] != out['tide/advr/AP']
    section = tide_section(out)
    assert set(section['variants']) == {'orig', 'advr'}
    table = format_tide(section)
    assert table.count('\n') == 3 and f"{out['tide/advr/dAP/cls']:.2f}" in table
