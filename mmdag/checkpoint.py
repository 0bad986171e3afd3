"""Local checkpoints under torch >= 2.6 with mmengine 0.10.7.

torch >= 2.6 makes ``torch.load`` default to ``weights_only=True``, and
mmengine 0.10.7's local loader calls it without the argument, so the
checkpoints that mmengine's own Runner writes (they hold a message hub and
numpy scalars) no longer load. Importing mmdag re-registers the local-path
loader to pass ``weights_only=False``: a checkpoint you name on the command
line or in ``load_from`` is trusted, as it was before torch 2.6 (a pickle can
run code: only load files you trust). Remote zoo checkpoints go through
``torch.hub.load_state_dict_from_url``, which already loads them this way.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_from_trusted_local(filename, map_location=None):
    """``mmengine.runner.checkpoint.load_from_local`` with ``weights_only=False``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} not found: pass the path of an existing '
                                'checkpoint file (or an http(s) URL of a zoo checkpoint)')
    return torch.load(filename, map_location=map_location, weights_only=False)


CheckpointLoader.register_scheme(prefixes='', loader=load_from_trusted_local, force=True)
