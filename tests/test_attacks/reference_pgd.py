"""The reference loop of the cospgd package (Agnihotri et al.), as its
README and SemSegBench run PGD, SegPGD and CosPGD: images on the 0..1
scale, a model that takes them, ``cospgd.Attack``'s loss scalings and its
``step_inf``. Used as an oracle by ``test_budgeted.py``; the start is passed
in (the package draws it with the global generator)."""
import torch
import torch.nn.functional as F


def reference_attack(kind, model, images, labels, start, epsilon, alpha, iterations,
                     num_classes, ignore_index=255):
    """``kind`` in pgd, segpgd, cospgd; ``model(x) -> [B, C, H, W]`` logits
    for ``x`` on 0..1; ``images`` ``[B, 3, H, W]`` on 0..1; ``labels``
    ``[B, H, W]``; ``start`` the perturbed start image. Returns the
    adversarial images (0..1)."""
    from cospgd import Attack
    orig = images.detach()
    x = start.detach().clone()
    for t in range(iterations):
        x.requires_grad_(True)
        out = model(x)
        loss = F.cross_entropy(out, labels, reduction='none', ignore_index=ignore_index)
        if kind == 'segpgd':
            loss = Attack.segpgd_scale(predictions=out, labels=labels, loss=loss, iteration=t,
                                       iterations=iterations)
        elif kind == 'cospgd':
            loss = Attack.cospgd_scale(predictions=out, labels=labels, loss=loss,
                                       num_classes=num_classes)
        loss = loss.mean()
        grad, = torch.autograd.grad(loss, x)
        x = Attack.step_inf(perturbed_image=x, epsilon=epsilon, data_grad=grad, orig_image=orig,
                            alpha=alpha, targeted=False, clamp_min=0, clamp_max=1)
    return x.detach()
