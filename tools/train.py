"""Train a model with the stock mmengine runner (used for the demo models).

    python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...]
                              [--trust-checkpoint NAME ...]

Every checkpoint the run reads (``load_from``, ``resume``, a backbone's
``pretrained`` / ``Pretrained`` init) is loaded weights only; one that needs
more (code stored in the pickle) is refused in one line, unless its name (a
path, URL or ``open-mmlab://`` zoo name, as written in the config) is passed
to ``--trust-checkpoint``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from _require import require  # noqa: E402

require('torch', 'mmengine')


def main(argv=None):
    from mmengine.config import Config, DictAction
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmdag.checkpoint import safe_loading, trust
    from mmdag.errors import MMDagError

    p = argparse.ArgumentParser(description='train a model with mmengine')
    p.add_argument('config')
    p.add_argument('--work-dir')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--trust-checkpoint', nargs='+', default=[], metavar='NAME',
                   help='checkpoints (paths, URLs or zoo names, as the config names them) to '
                        'load fully with pickle when weights-only loading refuses them: only '
                        'for files you trust, since unpickling may run code stored in them')
    a = p.parse_args(argv)
    from mmdag.paths import resolve_config
    a.config = resolve_config(a.config)   # mmdag::..., or configs/... from anywhere
    if not osp.isfile(a.config):
        sys.exit(f'error: config {a.config} not found')
    cfg = Config.fromfile(a.config)
    if a.cfg_options:
        cfg.merge_from_dict(a.cfg_options)
    cfg.work_dir = a.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(a.config))[0])
    # weights-only loading for every checkpoint the run reads: one a model loads
    # while it is built, init_weights' pretrained / Pretrained init_cfg (local,
    # http(s) or open-mmlab://... names), load_from and resume
    for name in a.trust_checkpoint:
        trust(name)
    with safe_loading():
        try:
            runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
            runner.train()
        except MMDagError as e:   # a refused checkpoint: one line
            sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
