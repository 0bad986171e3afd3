"""The encoder's choice of decoder queries in two-stage DETR-like detectors
(two-stage Deformable DETR, DINO: ``torch.topk``; DDQ-DETR: ``batched_nms``),
recorded on the clean image and replayed during the attack, for
:class:`mmdag.targets.queries.QueryTargets` (``query_selection='fixed'``).
"""
import sys
from contextlib import contextmanager
from typing import Optional, Sequence

import torch


def two_stage_selection(model) -> Optional[str]:
    """How the detector picks its decoder queries from the encoder: 'topk'
    (two-stage Deformable DETR, DINO), 'nms' (DDQ) or None (learned queries)."""
    name = type(model).__name__
    if hasattr(model, 'dqs_cfg') or 'DDQ' in name:
        return 'nms'
    if getattr(model, 'as_two_stage', False) or hasattr(model, 'dn_query_generator'):
        return 'topk'
    return None


class QuerySelection:
    """Records the encoder's query selection on the clean image and replays it.

    The selection is made in the detector's ``pre_decoder`` by ``torch.topk``
    (two-stage Deformable DETR, DINO: one call for the batch) or by
    ``batched_nms`` (DDQ: one call per image). While active, the module that
    defines ``pre_decoder`` sees a ``torch`` whose ``topk`` (or its own
    ``batched_nms``) records the indices per image, or returns the recorded
    ones.
    """

    def __init__(self, model, kind: str) -> None:
        self.kind = kind
        fn = type(model).pre_decoder
        self.module = sys.modules[fn.__module__]
        self.per_image: dict = {}

    @contextmanager
    def active(self, ids: Sequence[int], replay: bool):
        ids = list(ids)
        calls = []
        sel = self

        if self.kind == 'topk':
            class _Torch:
                def __getattr__(self, name):
                    return getattr(torch, name)

                def topk(self, input, k, dim=-1, *args, **kwargs):
                    if replay:
                        idx = torch.stack([sel.per_image[i] for i in ids]).to(input.device)
                        return input.gather(dim, idx), idx
                    out = torch.topk(input, k, dim, *args, **kwargs)
                    calls.append(out[1])
                    return out

            name, new = 'torch', _Torch()
        else:
            stock = self.module.batched_nms

            def new(boxes, scores, idxs, nms_cfg, *args, **kwargs):
                if replay:
                    keep = sel.per_image[ids[len(calls)]].to(boxes.device)
                    calls.append(keep)
                    return None, keep
                dets, keep = stock(boxes, scores, idxs, nms_cfg, *args, **kwargs)
                calls.append(keep)
                return dets, keep

            name = 'batched_nms'
        old = getattr(self.module, name)
        setattr(self.module, name, new)
        try:
            yield
        finally:
            setattr(self.module, name, old)
        if not replay:
            if self.kind == 'topk':
                if len(calls) != 1 or calls[0].shape[0] != len(ids):
                    raise RuntimeError(f'{len(calls)} query selections for {len(ids)} images')
                rows = list(calls[0].detach())
            else:
                if len(calls) != len(ids):
                    raise RuntimeError(f'{len(calls)} query selections for {len(ids)} images')
                rows = [c.detach() for c in calls]
            self.per_image.update(zip(ids, rows))
