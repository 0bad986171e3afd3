"""AttackFigureHook: Figure-1-style pictures of the first attacked test images."""
import os
import os.path as osp

import numpy as np
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook

from mmdag.contract import BatchAttack, image_name, pred_fields
from mmdag.registry import HOOKS
from .early_checks import check_writable
from .figures import save_figure
from .wiring import published


@HOOKS.register_module()
class AttackFigureHook(Hook):
    """Save a picture per image for the first ``num_figures`` test images:
    the clean image and its prediction, the perturbation, the adversarial
    image and its prediction (see :func:`mmdag.engine.figures.save_figure`).

    The adversarial prediction is the one the test loop made (its
    ``outputs``): a picture costs no forward. The clean prediction and the
    attack's result come from :class:`~mmdag.engine.AttackHook` through
    the runner's message hub. Every rank draws its share from its own first
    images; a resumed run counts the pictures the killed run left.

    Args:
        num_figures (int): pictures to save under ``<work_dir>/figures``.
            Defaults to 4.
    """

    priority = 'VERY_LOW'   # as the attack hook's: after it, when it adds this hook

    def __init__(self, num_figures: int = 4) -> None:
        self.num_figures = int(num_figures)
        self._left = 0

    def before_run(self, runner) -> None:
        # counted before any rank passes the resume's barriers (and draws)
        self._left = 0
        if self.num_figures <= 0:
            return
        d = osp.join(runner.work_dir, 'figures')
        check_writable(d, '--num-figures 0 (num_figures=0)')
        wanted = self.num_figures
        if resumes(runner):   # the killed run's pictures count
            wanted = max(0, wanted - len([f for f in os.listdir(d) if f.endswith('.png')]))
        # every rank draws its share of the pictures from its own images
        world = get_world_size()
        self._left = -(-wanted // world)
        if get_rank() == world - 1:   # the total stays num_figures
            self._left = max(0, wanted - (world - 1) * self._left)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._left <= 0 or outputs is None:
            return
        batch = published(runner.message_hub, BatchAttack)
        if batch is None:
            return
        n = min(self._left, len(batch.clean))
        self._left -= n
        result, samples = batch.result, batch.samples
        orig = batch.orig or [None] * n
        meta = runner.test_dataloader.dataset.metainfo
        palette, classes = meta.get('palette'), meta.get('classes')
        visualizer = getattr(runner, 'visualizer', None)
        for k in range(n):
            name = image_name(samples[k], k)
            row = save_figure(osp.join(runner.work_dir, 'figures', f'{name}.png'),
                              batch.clean[k], result.perturbations[k], result.adv_images[k],
                              orig[k], pred_fields(outputs[k]), palette, result.stats[k],
                              samples[k].metainfo.get('scale_factor'), classes, visualizer)
            if visualizer is not None:   # the config's vis_backends (TensorBoard, WandB...)
                visualizer.add_image(f'attack_figure_{name}', np.ascontiguousarray(row[..., ::-1]))


def resumes(runner) -> bool:
    """Whether the run continues a killed one: its resume hook's
    ``resume`` (which the attack hook sets before this hook's ``before_run``
    when it is given there)."""
    from .resume_hook import AttackResumeHook
    return any(h.resume for h in runner.hooks if isinstance(h, AttackResumeHook))
