"""APGD with SEA's losses and epsilon schedule (Croce et al., ECCV 2024).

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
Written from the authors' code
(``semseg/attacker.py`` of github nmndeep/Robust-Segmentation:
``apgd_train`` on the L-inf path and ``apgd_largereps``), per image:

- three stages of ``30%``, ``30%`` and the rest of ``max_iters`` at
  ``2 eps``, ``1.5 eps`` and ``eps``; the first from a random start in its
  ball, each next one from the previous stage's best point projected to its
  own ball;
- in a stage: momentum steps ``x + a (z - x) + (1 - a)(x - x_old)`` with
  ``z`` the projected sign step of size ``2 eps_stage`` (``a`` = 1 at the
  stage's first step, 0.75 after); at checkpoints (after ``22%`` of the
  stage's steps, then shorter intervals) the step size halves, and the point
  goes back to the best-loss one, where the loss oscillated or stopped
  improving (the authors' ``check_oscillation``);
- the loss whose gradient is followed is one of SEA's three; the loss that
  decides the checkpoints is the plain cross-entropy (the authors'
  ``track_loss='ce-avg'``);
- the returned point is the last stage's point with the fewest targets
  correct (the authors' ``x_best_adv``: later points win ties).

Per-image state is kept as tensors on the device: the step makes no transfer
to the host. Differences by design from the authors' code: the stages run
per image in one loop (their ``early_stop`` ends a stage once every image
of the batch has no pixel correct, a per-batch rule: mmdag runs every
image's ``max_iters``); accuracy is counted alike at every check (their
first check of a stage counts ignored pixels as wrong, later ones as
right); the loop makes two forwards and two backwards more than theirs
(between stages, each stage's last point is checked with the graph of the
next iteration, its gradient unused).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.registry import ATTACKS
from .base import IterativeAttack
from .budgeted import activation_of, finite_flags, target_ce, target_probs, uniform_start

__all__ = ['APGD', 'LOSSES']

#: SEA's losses: masked CE (targets still correct), the same with class
#: weights, and the Jensen-Shannon divergence of the prediction and the label
LOSSES = ('mask-ce', 'mask-ce-bal', 'js')


def _stages(n: int) -> List[int]:
    n1 = n2 = int(0.3 * n)
    return [n1, n2, n - n1 - n2]


class _State:
    """An image's APGD state (tensors on the image's device)."""

    def __init__(self, targets, correct: Tensor) -> None:
        self.targets = targets
        self.correct = correct
        self.track = None      # the cross-entropy at the last check (0-dim)
        self.n_ok = None       # targets correct at the last check (0-dim)


@ATTACKS.register_module()
class APGD(IterativeAttack):
    """APGD with SEA's losses and epsilon schedule, per image.

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8
            (8/255 on the 0..1 scale).
        max_iters (int): steps over the three stages (at least 4). Defaults
            to 300 (SEA's).
        loss (str): ``'mask-ce'`` (CE of the targets still correct),
            ``'mask-ce-bal'`` (the same weighted by ``class_weights``) or
            ``'js'`` (Jensen-Shannon divergence of the class probabilities
            and the one-hot label). Defaults to ``'mask-ce'``.
        class_weights (Sequence[float], optional): one weight per class for
            ``'mask-ce-bal'`` (SEA uses class-balancing weights of the
            dataset). Required for that loss.
        random_start (bool): the first stage starts from a uniform point of
            its ball (SEA's ``use_rs=True``). Defaults to True.
        quantize (bool): round to 8 bits at the end and check again.
            Defaults to False.
        clip_range (tuple): valid pixel range. Defaults to (0, 255).
        seed (int): base seed of the random start. Defaults to 0.
    """

    early_stop = False
    keep_best = True
    best_ties_to_later = True

    def __init__(self, epsilon: float = 8.0, max_iters: int = 300, loss: str = 'mask-ce',
                 class_weights: Optional[Sequence[float]] = None, random_start: bool = True,
                 quantize: bool = False, clip_range: Tuple[float, float] = (0.0, 255.0),
                 seed: int = 0) -> None:
        if epsilon is None or epsilon <= 0:
            raise ValueError(f'epsilon must be > 0 (0..255 scale), got {epsilon}')
        if max_iters < 4:
            raise ValueError(f'APGD needs max_iters >= 4 (three stages), got {max_iters}')
        if loss not in LOSSES:
            raise ValueError(f'unknown APGD loss {loss!r}; one of {LOSSES}')
        if loss == 'mask-ce-bal' and class_weights is None:
            raise ValueError("loss='mask-ce-bal' needs class_weights=[...] (one weight per "
                             'class, e.g. inverse class frequencies of the dataset)')
        # the base loop runs the stages' steps and the two moves between stages
        super().__init__(max_iters=max_iters + 2, epsilon=float(epsilon), quantize=quantize,
                         clip_range=clip_range, seed=seed)
        self.iterations = int(max_iters)
        self.loss_name = loss
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.random_start = bool(random_start)
        sizes = _stages(self.iterations)
        self._eps = [c * self.epsilon for c in (2.0, 1.5, 1.0)]
        # base iteration of each stage's first check
        self._begin = [0, sizes[0] + 1, sizes[0] + sizes[1] + 2]
        self._sizes = sizes

    def settings(self) -> dict:
        return dict(type='APGD', epsilon=self.epsilon, max_iters=self.iterations,
                    loss=self.loss_name, class_weights=self.class_weights,
                    random_start=self.random_start, quantize=self.quantize,
                    clip_range=self.clip_range, seed=self.seed)

    # ------------------------------------------------------------ the stages
    def _stage(self, m: int) -> Tuple[int, int]:
        """(stage, index of the check ``m`` inside it)."""
        s = 2 if m >= self._begin[2] else 1 if m >= self._begin[1] else 0
        return s, m - self._begin[s]

    def best_restarts(self, m: int) -> bool:
        return m == self._begin[2]

    def best_score(self, m: int, n_active: int, n_correct: int) -> Optional[float]:
        # the authors' accuracy counts every target, and only the last stage returns
        return n_correct if m >= self._begin[2] else None

    def _proj(self, x0: Tensor, x: Tensor, eps: float) -> Tensor:
        return torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(*self.clip_range)

    def start(self, x0: Tensor, mask: Optional[Tensor], seed: int) -> Optional[Tensor]:
        """Uniform in the first stage's ball (``2 eps``), from the image's own
        generator, zero outside its region, clipped to the range."""
        if not self.random_start:
            return None
        return uniform_start(x0, mask, seed, self._eps[0], self.clip_range)

    # ----------------------------------------------------------------- loss
    def init_image(self, seed, labels, targets, clean_logits, correct):
        return correct, _State(targets, correct)

    def loss(self, m: int, logits: Tensor, labels: Tensor, state: _State, active: Tensor,
             attacked: Tensor) -> Tensor:
        """SEA's loss of the image (mean over its targets); the plain
        cross-entropy and the count of correct targets are kept for the step."""
        act = activation_of(state.targets)
        ce = target_ce(logits, labels, act)
        n = max(labels.numel(), 1)
        with torch.no_grad():
            ok = state.targets.correct(logits, labels)
            state.track = ce.detach().sum() / n
            state.n_ok = ok.sum()
        if self.loss_name == 'js':
            p = target_probs(logits, act)
            q = F.one_hot(labels, logits.shape[1]).to(p.dtype)
            mid = (p + q) / 2
            js = (F.kl_div(mid.log(), p, reduction='none')
                  + F.kl_div(mid.log(), q, reduction='none')).sum(1) / 2
            return js.sum() / n
        if self.loss_name == 'mask-ce-bal':
            w = torch.tensor(self.class_weights, dtype=ce.dtype, device=ce.device)
            ce = ce * w[labels]
        return (ce * ok).sum() / n

    # ----------------------------------------------------------------- step
    def step(self, m: int, x0: List[Tensor], r: List[Tensor], grads: List[Tensor],
             states: list) -> List[object]:
        finite = finite_flags(grads)
        return [self._step_one(m, x, d, g, st) if ok else 'non_finite'
                for x, d, g, st, ok in zip(x0, r, grads, states, finite)]

    def _step_one(self, m: int, x0: Tensor, r: Tensor, g: Tensor, st: _State) -> Tensor:
        s, j = self._stage(m)
        n_s, eps = self._sizes[s], self._eps[s]
        x = x0 + r
        acc = st.n_ok
        if j == 0:   # the stage's first point: the authors' set-up
            st.x_best = st.x_best_adv = st.x_old = x
            st.acc = acc
            st.loss_best = st.loss_best_last = st.track
            st.reduced_last = torch.ones_like(st.track)
            st.g_best = g
            st.steps = torch.zeros(n_s, dtype=st.track.dtype, device=x.device)
            st.step_size = torch.full((), 2.0 * eps, device=x.device)
            st.counter, st.k = 0, max(int(0.22 * n_s), 1)
        else:        # the check after step j - 1: bests and the checkpoint
            i = j - 1
            better = acc <= st.acc
            st.x_best_adv = torch.where(better, x, st.x_best_adv)
            st.acc = torch.minimum(st.acc, acc)
            st.steps[i] = st.track
            up = st.track > st.loss_best
            st.x_best = torch.where(up, x, st.x_best)
            st.g_best = torch.where(up, g, st.g_best)
            st.loss_best = torch.where(up, st.track, st.loss_best)
            st.counter += 1
            if st.counter == st.k:
                k = st.k
                # the authors' check_oscillation (index -1 wraps to the last entry)
                t = sum((st.steps[i - c] > st.steps[i - c - 1]).to(st.track.dtype)
                        for c in range(k))
                osc = (t <= k * 0.75).to(st.track.dtype)
                no_impr = (1.0 - st.reduced_last) * (st.loss_best_last >= st.loss_best).to(
                    st.track.dtype)
                osc = torch.maximum(osc, no_impr)
                st.reduced_last = osc
                st.loss_best_last = st.loss_best
                red = osc > 0
                st.step_size = torch.where(red, st.step_size / 2, st.step_size)
                x = torch.where(red, st.x_best, x)
                g = torch.where(red, st.g_best, g)
                st.counter = 0
                st.k = max(k - max(int(0.03 * n_s), 1), max(int(0.06 * n_s), 1))
            if j == n_s:   # the stage is over: the next starts from its best point
                nxt = self._proj(x0, st.x_best_adv, self._eps[s + 1])
                return nxt - x0
        # step j of the stage
        a = 0.75 if j > 0 else 1.0
        grad2 = x - st.x_old
        st.x_old = x
        z = self._proj(x0, x + st.step_size * g.sign(), eps)
        x_new = self._proj(x0, x + (z - x) * a + grad2 * (1 - a), eps)
        return x_new - x0
