"""How the tests compare numbers, and the helpers that do it.

The rule for every tolerance in ``tests/``: a tolerance must sit well above
the rounding of what it compares, on any CPU, thread count and kernel
(``make test-numerics`` runs the numeric checks under a second
floating-point configuration to catch one that does not).

- float32 resolves about 6e-8 of a value's magnitude (``eps`` 1.19e-7, half
  of it per rounding). A loss of order 1 therefore changes by 1e-7 at its
  finest; a difference quotient ``(L(x + h) - L(x - h)) / 2h`` whose
  numerator is that small is rounding noise. Finite differences are taken
  in float64 (:func:`float64_targets`: the model copied to float64), where
  the same loss resolves 1e-16.
- Two float32 computations that sum in different orders (a batch against a
  single image, another kernel, another thread count) agree to about
  ``1e-6`` of the largest magnitude summed, not of the result: compare
  logits and losses with ``atol`` scaled to the magnitudes involved
  (``1e-4`` for logits of order 1-10), never with ``atol`` below 1e-5.
- A sign step (``alpha * sign(g)``) amplifies rounding: where ``|g|`` is
  within rounding of 0 the two signs may differ. Compare sign steps of two
  different computations only where ``|g|`` is well above its rounding, or
  compare the gradients themselves.
- Exact equality (``==``, ``torch.equal``) is for what is computed the same
  way by the same code on the same input: a resumed run against an
  uninterrupted one, an integer count, a file read back.
"""
import copy

import pytest
import torch


def float64_targets(targets):
    """A shallow copy of a target set whose model is a float64 copy: its
    logits are the same function of the image, computed in float64 (the
    stock data preprocessors cast the 0..255 images to float32, which holds
    integers and half-integers exactly, then normalise with the float64
    mean and std)."""
    out = copy.copy(targets)
    out.model = copy.deepcopy(targets.model).double()
    return out


def assert_matches_central_differences(g, x, loss, h: float = 0.5):
    """``g`` is the gradient of ``loss`` at ``x``: central differences pixel
    by pixel (``h = 0.5`` on 0..255), at the pixels of the largest gradients
    and at a few others, within 2% or 1e-3 of the largest gradient.

    ``loss`` must compute in float64 (:func:`float64_targets`): in float32
    the numerator of a small entry's quotient is rounding noise (the module
    docstring). ``g`` itself may come from float32: its rounding is about
    1e-6 of the largest gradient, far below the tolerance. A direction over
    the whole image is no check: its thousands of steps cross ReLU kinks,
    and its difference quotient drifts by several percent with ``h``."""
    flat = g.abs().flatten()
    picks = flat.topk(4).indices.tolist() + [7, 1234, 4321]
    scale = float(flat.max())
    assert scale > 0
    for k in picks:
        e = torch.zeros(x.numel(), dtype=x.dtype)
        e[k] = h
        e = e.view_as(x)
        fd = (loss(x + e) - loss(x - e)) / (2 * h)
        assert fd == pytest.approx(float(g.flatten()[k]), rel=0.02, abs=1e-3 * scale), k
