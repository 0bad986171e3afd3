"""What every iterative dense attack shares: the loop, its bookkeeping, the result.

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
A subclass of :class:`IterativeAttack`
supplies its loss, its step and, where it has one, its start; the base class
owns the rest, the same for every attack:

- the per-image active set (targets correct on the clean image and still
  correct now), the per-image stop and the compaction of finished images (an
  image that stopped is not forwarded again);
- the status of each image (:data:`STATUS`), the trace of the fraction still
  correct, the forward and backward counts;
- the final check (a last forward without a graph), the quantize re-check on
  the rounded 8-bit image, the valid range and the optional L-inf budget;
- the statistics (:mod:`mmdag.attacks.stats`) and, optionally, the best
  perturbation seen per image instead of the last one;
- the images with nothing to attack: one whose clean logits are not finite
  (no decision), and, where the loss needs targets correct on the clean
  image (:attr:`IterativeAttack.needs_correct_targets`), one with none,
  come back exactly clean, a random start included.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.contract import NOT_ATTACKED, STATUS
from .checks import check_bounds, recheck_rounded
from .result import AttackResult
from .stats import crop, perturbation_stats, region_mask
from .targets import TargetSet

__all__ = ['AttackResult', 'IterativeAttack', 'STATUS', 'NOT_ATTACKED']


def derive_seeds(base: int, seeds: Optional[Sequence[int]], num: int) -> List[int]:
    """The per-image seeds of an attack with base seed ``base``: from the
    images' own ``seeds`` (their batch positions when None)."""
    seeds = list(range(num)) if seeds is None else list(seeds)
    return [base * 1_000_003 + s for s in seeds]


def _nothing_status(labels: Tensor, num_correct: int) -> str:
    """The status of an image with no attacked target: ``'none_correct'``
    when none of its targets is correct on the clean image, ``'no_targets'``
    when it has no target or none the attack may take (e.g. no admissible
    adversarial label)."""
    return 'none_correct' if labels.numel() and not num_correct else 'no_targets'


class IterativeAttack:
    """An iterative attack on dense targets, batched, with per-image stop.

    At every iteration ``m`` the images still running are forwarded together;
    for each, the active set holds the attacked targets (those correct on the
    clean image, narrowed by :meth:`init_image`) that are still correct. An
    image stops when its active set is at most ``stop_fraction`` of its
    attacked targets (only with ``early_stop``), when its step is zero or not
    finite, or after ``max_iters`` updates; the last forward only checks.

    A subclass implements :meth:`loss` and :meth:`update` and may override
    :meth:`init_image` (per-image state from the clean logits, e.g. DAG's
    adversarial labels) and :meth:`start` (a random start).

    Args:
        max_iters (int): maximum number of updates per image.
        stop_fraction (float): with ``early_stop``, an image stops once at
            most this fraction of its attacked targets is still correct.
        epsilon (float, optional): L-inf budget on ``r`` (0..255 scale);
            None is unbounded.
        quantize (bool): round ``X + r`` to integers at the end (a real 8-bit
            image; correctness is then re-checked on it).
        clip_range (tuple): valid pixel range; ``X + r`` is clipped to it.
        seed (int): base seed of the attack's random choices; per-image
            generators are derived from it and from the ``seeds`` passed to
            :meth:`__call__`.
    """

    #: stop an image once its active set is (at most ``stop_fraction`` of) empty
    early_stop = True
    #: the loss is a function of the targets' logits (:meth:`loss`); False:
    #: of the images themselves (:meth:`images_loss`, e.g. a detector's own
    #: loss), and the loop's forward of the logits only checks (no graph)
    loss_on_logits = True
    #: return, per image, the perturbation of the check with the fewest
    #: targets still correct rather than the last one (:meth:`best_score`)
    keep_best = False
    #: with ``keep_best``, a later check with an equal score replaces the best
    best_ties_to_later = False
    #: the loss needs targets correct on the clean image (the active set);
    #: an image with none comes back clean, status ``'none_correct'`` (or
    #: ``'no_targets'``). False: a loss that needs none (a detector's own
    #: loss) attacks such an image too, for ``max_iters`` steps, and its
    #: statistics still say it had nothing to flip (that status,
    #: ``correct_frac`` 0, an empty trace)
    needs_correct_targets = True

    def __init__(self, max_iters: int, stop_fraction: float = 0.0,
                 epsilon: Optional[float] = None, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        if max_iters < 0:
            raise ValueError(f'max_iters must be >= 0, got {max_iters}')
        if not 0 <= stop_fraction < 1:
            raise ValueError(f'stop_fraction must be in [0, 1), got {stop_fraction}')
        if epsilon is not None and epsilon <= 0:
            raise ValueError(f'epsilon must be > 0 or None, got {epsilon}')
        self.max_iters = int(max_iters)
        self.stop_fraction = float(stop_fraction)
        self.epsilon = epsilon
        self.quantize = quantize
        self.clip_range = clip_range
        self.seed = int(seed)

    # ------------------------------------------------------- for subclasses
    def settings(self) -> dict:
        """The attack's settings, as the report and a resumed run's check
        hold them: its registered ``type`` and its arguments."""
        return dict(type=type(self).__name__,
                    **{k: v for k, v in vars(self).items() if not k.startswith('_')})

    def init_image(self, seed: int, labels: Tensor, targets: TargetSet, clean_logits: Tensor,
                   correct: Tensor) -> Tuple[Tensor, object]:
        """Per-image set-up from the clean logits: which targets are attacked
        (a bool mask; the default is every target correct on the clean image)
        and the image's state that :meth:`loss` receives (None by default)."""
        return correct, None

    def start(self, x0: Tensor, mask: Optional[Tensor], seed: int) -> Optional[Tensor]:
        """The initial perturbation of an image (zero where ``mask`` is 0,
        inside the budget and the range), or None for a zero start."""
        return None

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """The scalar whose gradient :meth:`update` receives, for one image at
        iteration ``m``: ``logits [N, C]``, true ``labels [N]``, the image's
        state, the active set and the attacked targets (bool ``[N]``)."""
        raise NotImplementedError

    def images_loss(self, m: int, images: List[Tensor], indices: List[int],
                    targets: TargetSet, states: list) -> Tensor:
        """With ``loss_on_logits = False``: the scalar whose gradient
        :meth:`update` receives, from the stepping images themselves
        (``indices``: their batch positions; ``states``: theirs)."""
        raise NotImplementedError

    def update(self, m: int, x0: List[Tensor], r: List[Tensor],
               grads: List[Tensor]) -> List[object]:
        """The next perturbation of each stepping image from the gradient of
        its :meth:`loss` (zero outside the image's region): a tensor inside
        the valid range and the budget (:meth:`project`), or a status
        (``'zero_grad'``, ``'non_finite'``) that stops the image unchanged."""
        raise NotImplementedError

    def step(self, m: int, x0: List[Tensor], r: List[Tensor], grads: List[Tensor],
             states: list) -> List[object]:
        """The next perturbation of each stepping image, as :meth:`update`,
        with the images' states (an attack whose step keeps per-image state,
        e.g. APGD's step size, overrides this instead)."""
        return self.update(m, x0, r, grads)

    def best_score(self, m: int, n_active: int, n_correct: int) -> Optional[float]:
        """With ``keep_best``: the score of the check at iteration ``m`` (lower
        is better; None: not a candidate). ``n_active``: attacked targets
        still correct; ``n_correct``: all targets correct now (those wrong on
        the clean image included). The default is ``n_active``."""
        return n_active

    def best_restarts(self, m: int) -> bool:
        """With ``keep_best``: whether the check at ``m`` forgets the best so
        far (an attack in stages keeps the best of its last stage)."""
        return False

    def project(self, x0: Tensor, x_next: Tensor) -> Tensor:
        """``x_next - x0`` with ``x_next`` clipped to the valid range, then
        clipped to the epsilon ball."""
        r = x_next.clamp_(*self.clip_range) - x0
        if self.epsilon is not None:
            r = r.clamp_(-self.epsilon, self.epsilon)
        return r

    def labels_of(self, states: list, attacked: List[Tensor],
                  labels: List[Tensor]) -> Optional[List[Tensor]]:
        """The result's ``adv_labels`` from the per-image states and attacked
        masks (None: the attack has none)."""
        return None

    # ------------------------------------------------------------------- core
    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None,
                 clean_logits: Optional[Sequence[Tensor]] = None) -> AttackResult:
        """Attack a batch.

        Args:
            images (Sequence[Tensor]): clean images ``[3, H, W]``, 0..255.
            targets (TargetSet): the targets of these images.
            seeds (Sequence[int], optional): one integer per image that makes
                its random choices independent of its place in the batch (e.g.
                a hash of its file name). Defaults to the batch position.
            regions (Sequence, optional): per image, ``(h, w)`` of the image
                inside padding that the test pipeline added (RTMDet, YOLOX
                pad to 640x640), or None for the whole image. The
                perturbation is zero outside the region (each gradient is
                masked before the step) and the statistics measure the
                region only. Defaults to whole images.
            clean_logits (Sequence[Tensor], optional): the targets' logits on
                the clean images, one per image, computed by the caller (an
                ensemble shares them): a random start then makes no clean
                forward of its own, and none is counted here.
        """
        num = len(images)
        if len(targets) != num:
            raise ValueError(f'{num} images but targets for {len(targets)}')
        seeds = derive_seeds(self.seed, seeds, num)
        regions = [None] * num if regions is None else list(regions)
        masks = [region_mask(x, reg) for x, reg in zip(images, regions)]
        x0 = [img.detach().float() for img in images]
        r = [torch.zeros_like(x) for x in x0]
        labels = targets.labels
        attacked: List[Optional[Tensor]] = [None] * num
        states: list = [None] * num
        iters = [0] * num
        correct_frac = [0.0] * num
        status = [''] * num
        num_correct = [0] * num
        trace: List[List[float]] = [[] for _ in range(num)]
        forwards, backwards = [0] * num, [0] * num
        best: List[Optional[tuple]] = [None] * num   # (score, n_act, n_att, r, correct_frac)
        for i in range(num):
            if labels[i].numel() == 0 and self.needs_correct_targets:
                status[i] = 'no_targets'
                attacked[i] = labels[i].new_zeros(0, dtype=torch.bool)

        starts = [self.start(x0[i], masks[i], seeds[i]) if not status[i] else None
                  for i in range(num)]
        if any(s is not None for s in starts):
            # a random start: the attacked targets are chosen on the clean image
            run = [i for i in range(num) if not status[i]]
            if clean_logits is None:
                with torch.no_grad():
                    clean = targets.logits([x0[i] for i in run], run)
            else:
                clean = [clean_logits[i] for i in run]
            for z, i in zip(clean, run):
                forwards[i] += clean_logits is None
                self._init(i, z, seeds, labels, targets, attacked, states, num_correct, status,
                           correct_frac)
                # an image with no decision, or nothing to attack, stays clean
                if starts[i] is not None and not status[i]:
                    r[i] = starts[i]

        for m in range(self.max_iters + 1):
            run = [i for i in range(num) if not status[i]]
            if not run:
                break
            # the last forward only checks what is still correct: no graph
            last = m == self.max_iters
            with torch.set_grad_enabled(not last and self.loss_on_logits):
                xs = [(x0[i] + r[i]).requires_grad_(not last) for i in run]
                logits = targets.logits(xs, run)
            # per-image state stays on the device; one transfer to the host
            # per iteration decides which images step
            active, counts = [], []
            for j, i in enumerate(run):
                z = logits[j]
                ok = targets.correct(z, labels[i])
                if attacked[i] is None:  # m == 0 from a zero start: z are the clean logits
                    # a target already wrong on the clean image is not attacked
                    # and not counted: it was never flipped by the attack (a
                    # sigmoid head's prior under the threshold, a pixel the
                    # model gets wrong)
                    attacked[i], states[i] = self.init_image(seeds[i], labels[i], targets, z, ok)
                    first = ok.sum()
                else:
                    first = ok.new_zeros((), dtype=torch.long)
                act = ok & attacked[i]   # T_m
                active.append(act)
                counts.append(torch.stack((torch.isfinite(z).all().long(), attacked[i].sum(),
                                           act.sum(), first, ok.sum())))
            loss, stepping = 0.0, []
            for j, (finite, n_att, n_act, first, n_ok) in enumerate(
                    torch.stack(counts).tolist()):
                i = run[j]
                iters[i] = m
                forwards[i] += 1
                if not finite:
                    # argmax of NaN / inf is no decision: never "flipped"
                    status[i] = 'non_finite'
                    correct_frac[i] = float('nan')   # unknown, never counted as flipped
                    if m == 0:   # no decision on the clean image: nothing is attacked
                        attacked[i] = torch.zeros_like(attacked[i])
                    continue
                if m == 0 and first:
                    num_correct[i] = first
                correct_frac[i] = n_act / n_att if n_att else 0.0
                if n_att:
                    trace[i].append(round(correct_frac[i], 6))
                    if self.keep_best:
                        self._keep(best, i, m, n_act, n_att, n_ok, r[i], correct_frac[i])
                done = n_att > 0 and n_act <= self.stop_fraction * n_att
                if n_att == 0 and (self.needs_correct_targets or last):
                    status[i] = _nothing_status(labels[i], num_correct[i])
                elif done and (self.early_stop or last):
                    status[i] = 'converged'
                elif last:
                    status[i] = 'max_iters'
                else:
                    if self.loss_on_logits:
                        loss = loss + self.loss(m, logits[j], labels[i], states[i], active[j],
                                                attacked[i])
                    stepping.append(j)
            if not stepping:
                continue
            if not self.loss_on_logits:
                ids = [run[j] for j in stepping]
                loss = self.images_loss(m, [xs[j] for j in stepping], ids, targets,
                                        [states[i] for i in ids])
            grads = torch.autograd.grad(loss, [xs[j] for j in stepping])
            # nothing moves in the padding around an image
            grads = [g.detach() if masks[run[j]] is None else g.detach() * masks[run[j]]
                     for j, g in zip(stepping, grads)]
            ids = [run[j] for j in stepping]
            steps = self.step(m, [x0[i] for i in ids], [r[i] for i in ids], grads,
                              [states[i] for i in ids])
            for i, step in zip(ids, steps):
                backwards[i] += 1
                if isinstance(step, str):
                    status[i] = step
                    continue
                r[i] = step
                iters[i] = m + 1

        if self.keep_best:
            for i in range(num):
                if best[i] is not None and status[i] != 'non_finite':
                    _, n_act, n_att, r[i], correct_frac[i] = best[i]
                    if n_act <= self.stop_fraction * n_att:
                        status[i] = 'converged'
                elif best[i] is None and status[i] == 'non_finite':
                    # no decision before the first candidate: the point then
                    # is no result (APGD's first stages run in a wider ball)
                    r[i] = torch.zeros_like(r[i])
        if self.quantize:
            recheck_rounded(self, x0, r, targets, attacked, status, correct_frac, forwards)

        check_bounds(type(self).__name__, x0, r, self.clip_range, self.epsilon)
        stats = []
        for i in range(num):
            s = perturbation_stats(crop(r[i], regions[i]))
            s.update(iters=iters[i], num_targets=int(labels[i].numel()),
                     num_correct=int(num_correct[i]),
                     correct_frac=correct_frac[i], converged=status[i] == 'converged',
                     status=status[i], trace=trace[i], forwards=forwards[i],
                     backwards=backwards[i])
            stats.append(s)
        return AttackResult(adv_images=[x0[i] + r[i] for i in range(num)], perturbations=r,
                            adv_labels=self.labels_of(states, attacked, labels), stats=stats)

    def _keep(self, best, i, m, n_act, n_att, n_ok, r, correct_frac) -> None:
        score = self.best_score(m, n_act, n_ok)
        if score is None:
            return
        old = best[i]
        if (old is None or self.best_restarts(m) or score < old[0]
                or (self.best_ties_to_later and score == old[0])):
            best[i] = (score, n_act, n_att, r, correct_frac)

    def _init(self, i, z, seeds, labels, targets, attacked, states, num_correct, status,
              correct_frac) -> None:
        """The per-image set-up from a clean forward made before a random start."""
        if not bool(torch.isfinite(z).all()):
            status[i] = 'non_finite'
            correct_frac[i] = float('nan')
            attacked[i] = torch.zeros_like(labels[i], dtype=torch.bool)
            return
        ok = targets.correct(z, labels[i])
        attacked[i], states[i] = self.init_image(seeds[i], labels[i], targets, z, ok)
        num_correct[i] = int(ok.sum())
        if self.needs_correct_targets and not bool(attacked[i].any()):
            status[i] = _nothing_status(labels[i], num_correct[i])
