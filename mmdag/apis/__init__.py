from .attack import attack_batch, image_seeds, perm_images

__all__ = ['attack_batch', 'image_seeds', 'perm_images']
