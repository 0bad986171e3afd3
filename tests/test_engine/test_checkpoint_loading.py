"""Checkpoints load weights-only; importing mmdag changes nothing."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT


def test_import_mmdag_leaves_loading_alone():
    code = (
        'import torch, torch.serialization as ts\n'
        'from mmengine.runner.checkpoint import CheckpointLoader as L\n'
        'before = (torch.load, dict(L._schemes), list(ts.get_safe_globals()))\n'
        'import mmdag, mmdag.apis.attack, mmdag.engine\n'
        'after = (torch.load, dict(L._schemes), list(ts.get_safe_globals()))\n'
        'assert before == after, (before, after)\n'
        'from mmdag.checkpoint import safe_loading, load_checkpoint_file\n'
        'with safe_loading():\n'
        '    assert L._get_checkpoint_loader("x.pth") is load_checkpoint_file\n'
        'assert (torch.load, dict(L._schemes), list(ts.get_safe_globals())) == before\n'
        'print("ok")\n')
    res = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == 'ok', res.stderr[-2000:]


def test_runner_written_and_plain_checkpoints_load_weights_only(trained_seg_checkpoint, tmp_path):
    from mmdag.checkpoint import load_checkpoint_file
    # what the Runner writes: message hub (HistoryBuffer), numpy arrays, scalars and dtypes
    ck = load_checkpoint_file(trained_seg_checkpoint)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer'} <= set(ck)
    hub = ck['message_hub']['log_scalars']
    buf = next(iter(hub.values()))
    values = buf.data[0]
    assert buf.mean(len(values)) == pytest.approx(float(np.mean(values)), rel=1e-5)
    # a zoo file: a plain dict with a state dict, or a bare state dict
    sd = ck['state_dict']
    for obj in ({'meta': {'epoch': 3, 'CLASSES': ('a', 'b')}, 'state_dict': sd}, sd):
        path = str(tmp_path / 'plain.pth')
        torch.save(obj, path)
        out = load_checkpoint_file(path)
        got = out['state_dict'] if 'state_dict' in out else out
        assert all(torch.equal(got[k], v) for k, v in sd.items())


def test_getattr_in_a_checkpoint_reaches_only_history_buffer_methods(tmp_path):
    from mmdag.checkpoint import CheckpointError, load_checkpoint_file

    class Sneaky:  # ndarray is allowed; its tofile method must not be reachable
        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))
    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(CheckpointError, match='--trust-checkpoint'):
        load_checkpoint_file(path)


def test_a_zoo_url_is_downloaded_once_and_loaded_weights_only(random_seg_checkpoint, tmp_path):
    import os

    from mmdag.checkpoint import load_checkpoint_url
    # urllib serves file:// as it serves https://download.openmmlab.com/...
    url = 'file://' + os.path.abspath(random_seg_checkpoint)
    cache = str(tmp_path / 'hub')
    ck = load_checkpoint_url(url, model_dir=cache)
    assert os.listdir(cache) == ['random_seg.pth'] and 'state_dict' in ck
    mtime = os.path.getmtime(os.path.join(cache, 'random_seg.pth'))
    load_checkpoint_url(url, model_dir=cache)   # cached: not fetched again
    assert os.path.getmtime(os.path.join(cache, 'random_seg.pth')) == mtime


def test_the_readme_python_api_loads_a_runner_checkpoint(trained_seg_checkpoint):
    from mmseg.apis import init_model

    from conftest import TINY
    from mmdag.checkpoint import safe_loading
    with safe_loading():
        model = init_model(TINY, trained_seg_checkpoint, device='cpu')
    ref = torch.load(trained_seg_checkpoint, weights_only=False)['state_dict']
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.items())
