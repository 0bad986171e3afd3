"""What makes DAG slow or fast on a segmentor: the measurements behind the README.

    python tools/analysis/dag_diagnostics.py CONFIG CHECKPOINT [--num-images 4] \
        [--runs "max_iters=200" "adv_labels='permute'" ...] [--single-pixel]

For each run (DAG keyword arguments, comma separated) on the first images of
the test set it prints: mean iterations, p, L-inf, and the fraction of target
pixels still correct at the end, overall, for background (class 0) and for
object pixels. ``--single-pixel`` also prints the linearised L-inf that would
flip one pixel on its own (clean margin / L1 norm of its gradient), for 25
random correct pixels per image.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))   # tools/
from _require import require  # noqa: E402

require('torch', 'mmengine')
import torch  # noqa: E402


def load(config, checkpoint, n, data_root=None):
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmseg.apis import init_model
    from mmseg.registry import DATASETS

    from mmdag.checkpoint import safe_loading
    with safe_loading():  # weights-only, Runner-written checkpoints included
        model = init_model(config, checkpoint,
                           device='cuda' if torch.cuda.is_available() else 'cpu')
    init_default_scope('mmseg')
    ds_cfg = model.cfg.test_dataloader.dataset
    if data_root:
        ds_cfg.data_root = data_root
    ds = DATASETS.build(ds_cfg)
    return model, pseudo_collate([ds[i] for i in range(min(n, len(ds)))])


def still_correct(targets, images):
    idx = list(range(len(images)))
    with torch.no_grad():
        logits = targets.logits(images, idx)
    counts = dict(all=[0, 0], background=[0, 0], objects=[0, 0])
    for z, lab in zip(logits, targets.labels):
        ok = targets.correct(z, lab)
        for key, sel in (('all', lab >= 0), ('background', lab == 0), ('objects', lab > 0)):
            counts[key][0] += int(ok[sel].sum())
            counts[key][1] += int(sel.sum())
    return {k: (c / t if t else float('nan')) for k, (c, t) in counts.items()}


def single_pixel_linf(model, batch, per_image=25):
    from mmdag.engine.step import attack_mode
    from mmdag.targets import build_targets
    ratios = []
    g = torch.Generator().manual_seed(0)
    with attack_mode(model):
        device = next(model.parameters()).device
        images = [x.to(device).float() for x in batch['inputs']]
        t = build_targets(model, images, batch['data_samples'])
        for i, x in enumerate(images):
            x = x.clone().requires_grad_(True)
            z = t.logits([x], [i])[0]
            lab = t.labels[i]
            other = z.detach().clone()
            other[torch.arange(len(lab)), lab] = -float('inf')
            margin = z.gather(1, lab[:, None])[:, 0] - z.gather(1, other.argmax(1)[:, None])[:, 0]
            ok = (margin > 0).nonzero()[:, 0]
            for k in ok[torch.randperm(len(ok), generator=g)[:per_image]]:
                grad, = torch.autograd.grad(margin[k], x, retain_graph=True)
                ratios.append((margin[k] / grad.abs().sum()).item())
    return torch.tensor(ratios)


def main(argv=None):
    from mmdag.apis import attack_batch
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--num-images', type=int, default=4)
    p.add_argument('--data-root')
    p.add_argument('--runs', nargs='*', default=['max_iters=200'])
    p.add_argument('--single-pixel', action='store_true')
    a = p.parse_args(argv)
    model, batch = load(a.config, a.checkpoint, a.num_images, a.data_root)
    n = len(batch['inputs'])
    if a.single_pixel:
        r = single_pixel_linf(model, batch)
        print(f'single-pixel linearised L-inf to flip: median {r.median():.2f}, '
              f'p10 {r.quantile(0.1):.2f}, p90 {r.quantile(0.9):.2f} (0..255)')
    for spec in a.runs:
        kwargs = eval(f'dict({spec})', {})  # trusted command-line input
        res, targets = attack_batch(model, batch, kwargs)
        sc = still_correct(targets, res.adv_images)
        mean = lambda k: sum(s[k] for s in res.stats) / n  # noqa: E731
        print(f'{spec:40s} iters {mean("iters"):6.1f}  p {mean("p"):.4f}  '
              f'L-inf {mean("linf"):6.2f}  '
              f'still correct: all {sc["all"]:.3f}  background {sc["background"]:.3f}  '
              f'objects {sc["objects"]:.3f}', flush=True)


if __name__ == '__main__':
    main()
