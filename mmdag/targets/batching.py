"""Forward a batch in groups of images that share a padded canvas.

The OpenMMLab data preprocessors pad a batch to its largest image (rounded up
to ``pad_size_divisor``), and mmseg's test preprocessor refuses a batch of
mixed sizes. So what a model computes for one image depends on its batch
companions: a larger canvas shifts the feature maps (flat prior indices point
elsewhere) and changes the convolution features near the padded border (by
about 0.02 in a two-stage detector's logits). During DAG the companions
change, because an image that stopped is no longer forwarded.

mmdag's rule: **every forward of an image uses the image's own canvas**, the
one a batch of one gives (for mmdet: its size rounded up to
``pad_size_divisor``; for mmseg: its own size). Images whose canvases are
equal are forwarded together, so a batch of equal-sized images is still one
forward. Targets, attack steps and the ORIG / ADVR / PERM predictions of an
image are therefore the same whatever the batch size, the batch's other
images and which of them are still being attacked: exactly what a batch size
of 1 gives, the setting in which the zoo reports its numbers. The price is
fewer images per forward when a batch mixes canvases (a fixed-size test
pipeline, e.g. a ``Pad`` to one size, makes every batch one group).
"""
import math
from typing import Callable, List, Sequence, Tuple

from torch import Tensor


def canvas_of(model, shape: Sequence[int]) -> Tuple[int, int]:
    """The padded size a batch of one gives an image of ``shape`` (``[.., H, W]``)."""
    h, w = int(shape[-2]), int(shape[-1])
    pre = getattr(model, 'data_preprocessor', None)
    if type(pre).__name__ == 'SegDataPreProcessor':
        # mmseg pads in test mode only to test_cfg's size / size_divisor, after
        # asserting one size per batch: its images group by their own size
        return h, w
    d = int(getattr(pre, 'pad_size_divisor', 1) or 1)
    return math.ceil(h / d) * d, math.ceil(w / d) * d


def canvas_groups(model, images: Sequence[Tensor]) -> List[List[int]]:
    """Positions of ``images`` grouped by canvas, in order of first appearance."""
    groups = {}
    for k, x in enumerate(images):
        groups.setdefault(canvas_of(model, x.shape), []).append(k)
    return list(groups.values())


def map_canvas_groups(model, images: Sequence[Tensor],
                      fn: Callable[[List[int]], Sequence]) -> list:
    """Call ``fn(positions)`` once per canvas group; ``fn`` returns one result
    per position. Returns the results in the order of ``images``."""
    out: list = [None] * len(images)
    for group in canvas_groups(model, images):
        results = list(fn(group))
        if len(results) != len(group):
            raise RuntimeError(f'expected {len(group)} results, got {len(results)}')
        for k, res in zip(group, results):
            out[k] = res
    return out


def grouped_test_step(model, data: dict) -> list:
    """``model.test_step(data)`` made one canvas group at a time.

    The data samples come back in the order of ``data['inputs']``, as the stock
    ``test_step`` returns them. A batch with one canvas is one call.
    """
    inputs = data['inputs']
    test_step = getattr(model, '_mmdag_stock_test_step', model.test_step)
    if not isinstance(inputs, (list, tuple)):   # an already stacked batch: one canvas
        return test_step(data)
    samples = data.get('data_samples')

    def step(group):
        sub = dict(data, inputs=[inputs[k] for k in group],
                   data_samples=None if samples is None else [samples[k] for k in group])
        return test_step(sub)

    return map_canvas_groups(model, inputs, step)


def install_grouped_test_step(model) -> Callable[[], None]:
    """Make ``model.test_step`` (what the test loop calls, also through a DDP
    wrapper, which calls ``module.test_step``) forward by canvas groups.

    Returns a function that restores the stock ``test_step``.
    """
    if hasattr(model, '_mmdag_stock_test_step'):
        return lambda: None
    own = model.__dict__.get('test_step')   # an instance attribute set by someone else
    model._mmdag_stock_test_step = model.test_step

    def test_step(data):
        return grouped_test_step(model, data)

    model.test_step = test_step

    def restore():
        del model._mmdag_stock_test_step
        if own is None:
            del model.test_step
        else:
            model.test_step = own

    return restore
