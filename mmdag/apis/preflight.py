"""Checks a run can make before anything is built: the test data is there."""
import os.path as osp
from typing import Iterator, Optional, Tuple


def _local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _datasets(ds, key: str) -> Iterator[Tuple[dict, str]]:
    """The leaf dataset configs of ``ds`` (through Concat/Repeat wrappers),
    each with its config key."""
    if not isinstance(ds, dict):
        return
    if 'datasets' in ds:
        for k, d in enumerate(ds['datasets']):
            yield from _datasets(d, f'{key}.datasets.{k}')
    elif 'dataset' in ds:
        yield from _datasets(ds['dataset'], f'{key}.dataset')
    else:
        yield ds, key


def _join(root, path):
    if not _local(path):
        return None
    return path if (osp.isabs(path) or not _local(root)) else osp.join(root, path)


def check_dataset(cfg) -> Optional[str]:
    """The first missing test data root, annotation file or image directory
    (or evaluator annotation file), as a one-line message naming the fix;
    None when everything named is there. Remote paths are not checked."""
    loader = cfg.get('test_dataloader', None) or {}
    for ds, key in _datasets(loader.get('dataset', None), 'test_dataloader.dataset'):
        if ds.get('backend_args', None):
            continue  # a file backend other than the local disk
        root = ds.get('data_root', None)
        if _local(root) and not osp.isdir(root):
            return (f'test data root {root} not found ({key}.data_root): put the dataset '
                    f'there, or pass --cfg-options {key}.data_root=DIR')
        ann = _join(root, ds.get('ann_file', None))
        if ann and not osp.exists(ann):
            return (f'test annotation file {ann} not found ({key}.ann_file): check the '
                    f'dataset under {root or "."}, or pass --cfg-options {key}.ann_file=FILE')
        prefix = ds.get('data_prefix', None) or {}
        for name, sub in (prefix.items() if isinstance(prefix, dict) else []):
            if name not in ('img', 'img_path', 'seg_map_path', 'sub_data_root'):
                continue
            path = _join(root, sub)
            if path and not osp.isdir(path):
                return (f'test data directory {path} not found ({key}.data_prefix.{name}): '
                        f'check the dataset under {root or "."}')
    evaluator = cfg.get('test_evaluator', None)
    many = isinstance(evaluator, (list, tuple))
    for k, m in enumerate(evaluator if many else [evaluator]):
        where = f'test_evaluator.{k}' if many else 'test_evaluator'
        while isinstance(m, dict) and isinstance(m.get('metric', None), dict):
            m, where = m['metric'], where + '.metric'  # inside an AttackMetric
        ann = m.get('ann_file', None) if isinstance(m, dict) else None
        if _local(ann) and not osp.exists(ann):
            return (f'evaluation annotation file {ann} not found ({where}.ann_file): put the '
                    f'dataset\'s annotations there, or pass --cfg-options {where}.ann_file=FILE')
    return None
