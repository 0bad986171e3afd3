"""mmdag's Python API: attack a built OpenMMLab model on a data batch, and
put the attack into a config.

The per-batch step lives below the hooks (:mod:`mmdag.engine.step`); it is
re-exported here, as ``mmdet.apis`` / ``mmseg.apis`` re-export theirs.
"""
from mmdag.contract import image_seeds
from mmdag.engine.step import attack_batch, attack_mode, content_region, perm_images, transfer_batch
from .config import add_attack_to_config, add_dag_to_config  # noqa: F401 (old name)

__all__ = ['attack_batch', 'attack_mode', 'content_region', 'image_seeds', 'perm_images',
           'transfer_batch', 'add_attack_to_config']
