"""SEA's APGD (Croce et al., ECCV 2024), written from the authors' code
(github nmndeep/Robust-Segmentation, ``semseg/attacker.py``: ``apgd_train``
on the L-inf path, ``apgd_largereps``, ``masked_cross_entropy``,
``masked_cross_entropy_balanced``, ``js_loss``) with nothing changed but
what the oracle test needs:

- the start is passed in (the authors draw it with the global generator);
- ignored pixels are labelled ``-1``, as the authors require;
- the loss weights of the balanced loss are passed in.

One difference by design, kept here as the authors wrote it: their first
accuracy check counts ignored pixels as wrong and every later one as right,
so with ignored pixels the start looks better than it is. mmdag counts every
check alike; the oracle test uses images without ignored pixels.

Images on 0..1; ``model(x) -> [B, C, H, W]`` logits; the step size follows
the plain cross-entropy (``track_loss='ce-avg'``, as the authors' evaluation
script ``tools/infer.py`` calls ``apgd_largereps``). Returns the authors'
``x_init`` of the last stage: per image, the iterate of that stage with the
lowest pixel accuracy.
"""
import torch
import torch.nn.functional as F


def masked_cross_entropy(pred, target, weights=None):
    mask = pred.max(1)[1] == target
    mask = (target != -1) * mask
    loss = F.cross_entropy(pred, target, reduction='none', ignore_index=-1)
    return mask.float().detach() * loss


def masked_cross_entropy_balanced(pred, target, weights=None):
    mask = pred.max(1)[1] == target
    mask = (target != -1) * mask
    loss = F.cross_entropy(pred, target, reduction='none', ignore_index=-1,
                           weight=weights.to(pred.device))
    return mask.float().detach() * loss


def js_loss(p, q, weights=None):
    p = F.softmax(p, 1)
    mask_background = (q != -1).long()
    q = mask_background * q
    q = F.one_hot(q.view(q.shape[0], -1), p.shape[1])
    q = q.permute(0, 2, 1).view(p.shape).float()
    m = (p + q) / 2
    loss = (F.kl_div(m.log(), p, reduction='none') + F.kl_div(m.log(), q, reduction='none')) / 2
    loss = mask_background.unsqueeze(1) * loss
    return loss.sum(dim=1)


def track_loss(pred, target):
    """The authors' ``track_loss='ce-avg'`` (tools/infer.py): the loss that
    decides the step size is the plain cross-entropy."""
    return F.cross_entropy(pred, target, reduction='none', ignore_index=-1)


LOSSES = {'mask-ce-avg': masked_cross_entropy, 'mask-ce-bal': masked_cross_entropy_balanced,
          'js-avg': js_loss}


def pixel_to_img_loss(loss, mask_background):
    loss = mask_background * loss
    return loss.view(loss.shape[0], -1).mean(-1)


def check_oscillation(x, j, k, k3=0.75):
    t = torch.zeros(x.shape[1]).to(x.device)
    for counter5 in range(k):
        t += (x[j - counter5] > x[j - counter5 - 1]).float()
    return (t <= k * k3 * torch.ones_like(t)).float()


def apgd_train(model, x, y, eps, n_iter, loss, x_init, weights=None):
    criterion_indiv = LOSSES[loss]
    ndims = len(x.shape) - 1
    bs = x.shape[0]
    x_adv = x_init.clone()
    mask_background = 1 - (y == -1).float()
    x_adv = x_adv.clamp(0.0, 1.0)
    x_best = x_adv.clone()
    x_best_adv = x_adv.clone()
    loss_steps = torch.zeros([n_iter, bs])
    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    k = n_iter_2 + 0
    thr_decr = 0.75
    alpha = 2.0
    step_size = alpha * eps * torch.ones([bs, *[1] * ndims])
    counter3 = 0

    x_adv.requires_grad_()
    logits = model(x_adv)
    loss_indiv = pixel_to_img_loss(criterion_indiv(logits, y, weights), mask_background)
    grad = torch.autograd.grad(loss_indiv.sum(), [x_adv])[0].detach()
    loss_indiv = pixel_to_img_loss(track_loss(logits, y), mask_background)
    grad_best = grad.clone()
    x_adv = x_adv.detach()
    loss_indiv = loss_indiv.detach()

    acc = logits.detach().max(1)[1] == y   # the authors' first check: ignored pixels
    acc = acc.float().view(bs, -1).mean(-1)  # count as wrong here, as right below
    loss_best = loss_indiv.clone()
    loss_best_last_check = loss_best.clone()
    reduced_last_check = torch.ones_like(loss_best)
    x_adv_old = x_adv.clone()

    for i in range(n_iter):
        x_adv = x_adv.detach()
        grad2 = x_adv - x_adv_old
        x_adv_old = x_adv.clone()
        a = 0.75 if i > 0 else 1.0
        x_adv_1 = x_adv + step_size * torch.sign(grad)
        x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
        x_adv_1 = torch.clamp(torch.min(torch.max(
            x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps), 0.0, 1.0)
        x_adv = x_adv_1 + 0.0

        x_adv.requires_grad_()
        logits = model(x_adv)
        loss_indiv = pixel_to_img_loss(criterion_indiv(logits, y, weights), mask_background)
        if i < n_iter - 1:
            grad = torch.autograd.grad(loss_indiv.sum(), [x_adv])[0].detach()
        loss_indiv = pixel_to_img_loss(track_loss(logits, y), mask_background)
        x_adv = x_adv.detach()
        loss_indiv = loss_indiv.detach()

        pred = logits.detach().max(1)[1] == y
        pred[y == -1] = True
        avg_acc = pred.float().view(bs, -1).mean(-1)
        ind_pred = (avg_acc <= acc).nonzero().squeeze()
        acc = torch.min(acc, avg_acc)
        x_best_adv[ind_pred] = x_adv[ind_pred] + 0.0

        y1 = loss_indiv.clone()
        loss_steps[i] = y1 + 0
        ind = (y1 > loss_best).nonzero().squeeze()
        x_best[ind] = x_adv[ind].clone()
        grad_best[ind] = grad[ind].clone()
        loss_best[ind] = y1[ind] + 0
        counter3 += 1
        if counter3 == k:
            fl_oscillation = check_oscillation(loss_steps, i, k, k3=thr_decr)
            fl_reduce_no_impr = (1.0 - reduced_last_check) * (
                loss_best_last_check >= loss_best).float()
            fl_oscillation = torch.max(fl_oscillation, fl_reduce_no_impr)
            reduced_last_check = fl_oscillation.clone()
            loss_best_last_check = loss_best.clone()
            if fl_oscillation.sum() > 0:
                ind_fl_osc = (fl_oscillation > 0).nonzero().squeeze()
                step_size[ind_fl_osc] /= 2.0
                x_adv[ind_fl_osc] = x_best[ind_fl_osc].clone()
                grad[ind_fl_osc] = grad_best[ind_fl_osc].clone()
            counter3 = 0
            k = max(k - size_decr, n_iter_min)
    return x_best_adv


def apgd_largereps(model, x, y, eps, n_iter, loss, x_start, weights=None):
    """The authors' schedule: 30% of the iterations at 2 eps, 30% at 1.5 eps,
    the rest at eps, each stage started from the last one's best point."""
    n_iters = [int(c * n_iter) for c in [0.3, 0.3]]
    n_iters.append(n_iter - sum(n_iters))
    epss = [c * eps for c in [2, 1.5, 1]]
    x_init = x_start
    first = True
    for inner_it, inner_eps in zip(n_iters, epss):
        if not first:
            x_init = (x + (x_init - x).clamp(-inner_eps, inner_eps)).clamp(0.0, 1.0)
        first = False
        x_init = apgd_train(model, x, y, inner_eps, inner_it, loss, x_init, weights)
    return x_init


__all__ = ['apgd_largereps', 'apgd_train', 'LOSSES']
