"""Checkpoints load weights-only; importing mmdag changes nothing."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, data_root_opts, run_tool


def test_import_mmdag_leaves_loading_alone():
    code = (
        'import torch, torch.serialization as ts\n'
        'from mmengine.runner.checkpoint import CheckpointLoader as L\n'
        # torch < 2.5 has no safe_globals list to leave alone
        'safe = getattr(ts, "get_safe_globals", lambda: [])\n'
        'before = (torch.load, dict(L._schemes), list(safe()))\n'
        'import mmdag, mmdag.engine.step, mmdag.engine\n'
        'after = (torch.load, dict(L._schemes), list(safe()))\n'
        'assert before == after, (before, after)\n'
        'from mmdag.checkpoint import safe_loading, load_checkpoint_file\n'
        'with safe_loading():\n'
        '    assert L._get_checkpoint_loader("x.pth") is load_checkpoint_file\n'
        'assert (torch.load, dict(L._schemes), list(safe())) == before\n'
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

    from mmdag.checkpoint import safe_loading
    with safe_loading():
        model = init_model(TINY, trained_seg_checkpoint, device='cpu')
    ref = torch.load(trained_seg_checkpoint, weights_only=False)['state_dict']
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.items())


# --------------------------------------------------------------------------
# every scheme of mmengine's CheckpointLoader, the hub cache, trust, nodes

class _Payload:
    """Unpickling it creates a file: stands in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _state_dict():
    return {'conv.weight': torch.arange(6.).reshape(2, 3), 'conv.bias': torch.zeros(2)}


def _payload_checkpoint(path, marker):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    torch.save({'state_dict': _state_dict(), 'meta': {'payload': _Payload(marker)}}, str(path))
    return str(path)


def _runner_like_checkpoint(path):
    """More than a bare state dict, all of it on the allow-list (what
    mmengine's Runner writes: a HistoryBuffer, numpy arrays, scalars, dtypes)."""
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(1.5)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    torch.save({'state_dict': _state_dict(),
                'meta': {'arr': np.arange(3), 'dtype': np.dtype('float32'), 'x': np.float64(2)},
                'message_hub': {'log_scalars': {'loss': buf}}}, str(path))
    return str(path)


@pytest.fixture
def zoo_home(tmp_path, monkeypatch):
    """A temporary TORCH_HOME and MMENGINE_HOME; torchvision:// and modelzoo://
    resolve with mmengine's own table of torchvision URLs (torchvision is not
    installed); nothing is trusted. Returns the hub cache folder."""
    import mmengine
    from mmengine.runner import checkpoint as mc

    from mmdag.checkpoint import local as ckpt_local  # where trust() keeps its set
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    table = os.path.join(mmengine.__path__[0], 'hub', 'torchvision_0.12.json')
    monkeypatch.setattr(mc, 'get_torchvision_models', lambda: mmengine.load(table))
    monkeypatch.setattr(ckpt_local, '_TRUSTED', set())
    return str(tmp_path / 'torch_home' / 'hub' / 'checkpoints')


def _zoo_url(name):
    """The URL mmengine's own loader reads for a zoo name."""
    from mmengine.runner import checkpoint as mc
    scheme, model = name.split('://')
    if scheme in ('open-mmlab', 'openmmlab'):
        model = mc.get_deprecated_model_names().get(model, model)
    table = {'open-mmlab': mc.get_external_models, 'openmmlab': mc.get_external_models,
             'mmcls': mc.get_mmcls_models, 'torchvision': mc.get_torchvision_models,
             'modelzoo': mc.get_torchvision_models}[scheme]()
    return table[model]


ZOO_NAMES = ['open-mmlab://resnet50_v1c', 'openmmlab://vgg16_caffe',
             'open-mmlab://resnet50_caffe',   # a deprecated name, mapped as mmengine maps it
             'mmcls://resnet50', 'torchvision://resnet50', 'modelzoo://resnet18']


@pytest.mark.parametrize('name', ZOO_NAMES)
def test_a_payload_in_the_cache_under_a_zoo_name_never_runs(name, zoo_home, tmp_path):
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdag.checkpoint import CheckpointError, safe_loading
    marker = tmp_path / 'payload_ran'
    cached = os.path.join(zoo_home, os.path.basename(_zoo_url(name)))
    _payload_checkpoint(cached, marker)
    model = torch.nn.Module()
    model.conv = torch.nn.Linear(3, 2)
    with safe_loading():
        with pytest.raises(CheckpointError, match='holds objects other than weights') as e:
            load_checkpoint(model, name)
        assert name in str(e.value) and '\n' not in str(e.value)
        assert f'moved to {cached}.refused' in str(e.value)
        # out of every loader's way: the next load does not find it in the cache
        assert not os.path.exists(cached) and os.path.exists(cached + '.refused')
        _payload_checkpoint(cached, marker)
        with pytest.raises(CheckpointError):
            CheckpointLoader.load_checkpoint(name)
    assert not marker.exists()


def test_a_good_checkpoint_under_a_zoo_name_loads_weights_only(zoo_home, tmp_path, monkeypatch):
    import json

    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdag.checkpoint import safe_loading

    # cached under the name open-mmlab://resnet50_v1c resolves to; and a name that
    # mmengine's home maps to a file there (MMENGINE_HOME/open_mmlab.json)
    _runner_like_checkpoint(os.path.join(zoo_home, os.path.basename(
        _zoo_url('open-mmlab://resnet50_v1c'))))
    home = tmp_path / 'mmengine_home'
    _runner_like_checkpoint(home / 'local' / 'mine.pth')
    (home / 'open_mmlab.json').write_text(json.dumps({'mmdag_local': 'local/mine.pth'}))
    loads = []
    real_load = torch.load

    from mmdag import checkpoint as ckpt

    def spy(*args, **kwargs):
        # weights only: torch's (>= 2.5 with mmdag's allow-list) or, on an
        # older torch, mmdag's restricted unpickler
        loads.append(kwargs.get('weights_only') is True
                     or kwargs.get('pickle_module') is ckpt._RestrictedPickle)
        return real_load(*args, **kwargs)
    monkeypatch.setattr(torch, 'load', spy)
    with safe_loading():
        for name in ('open-mmlab://resnet50_v1c', 'openmmlab://mmdag_local'):
            ck = CheckpointLoader.load_checkpoint(name)
            assert all(torch.equal(ck['state_dict'][k], v) for k, v in _state_dict().items())
            assert ck['message_hub']['log_scalars']['loss'].current() == 1.5
        # an mmcls:// checkpoint's backbone, as mmengine hands it over
        torch.save({'state_dict': {'backbone.w': torch.ones(1), 'head.w': torch.ones(1)}},
                   os.path.join(zoo_home, os.path.basename(_zoo_url('mmcls://resnet50'))))
        assert list(CheckpointLoader.load_checkpoint('mmcls://resnet50')['state_dict']) == ['w']
    assert loads and all(w is True for w in loads), loads


def test_a_refused_download_does_not_stay_in_the_cache(zoo_home, tmp_path, monkeypatch):
    from mmengine.runner import checkpoint as mc
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdag.checkpoint import CheckpointError, load_checkpoint_url, safe_loading
    marker = tmp_path / 'payload_ran'
    url = 'file://' + _payload_checkpoint(tmp_path / 'served' / 'evil.pth', marker)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_url(url)
    assert not os.path.exists(zoo_home) or os.listdir(zoo_home) == []
    assert 'the download was deleted' in str(e.value)
    page = tmp_path / 'served' / 'page.pth'   # what a server sends for a missing file
    page.write_text('<html>404 Not Found</html>')
    with pytest.raises(CheckpointError, match='the download is not a PyTorch checkpoint'):
        load_checkpoint_url('file://' + str(page))
    assert os.listdir(zoo_home) == []
    # the same through a zoo name and mmengine's loader
    monkeypatch.setattr(mc, 'get_mmcls_models', lambda: {'evil': url})
    with safe_loading(), pytest.raises(CheckpointError, match='mmcls://evil'):
        CheckpointLoader.load_checkpoint('mmcls://evil')
    assert os.listdir(zoo_home) == []   # no file under its name, no temporary either
    assert not marker.exists()


def test_a_trusted_url_or_zoo_name_loads_fully_with_a_line(zoo_home, tmp_path, monkeypatch,
                                                           capsys):
    from fractions import Fraction

    from mmengine.runner import checkpoint as mc
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdag.checkpoint import CheckpointError, load_checkpoint_url, safe_loading, trust
    served = tmp_path / 'served' / 'extra.pth'
    served.parent.mkdir()
    torch.save({'state_dict': _state_dict(), 'meta': {'ratio': Fraction(1, 3)}}, str(served))
    url = 'file://' + str(served)
    with pytest.raises(CheckpointError, match='--trust-checkpoint'):
        load_checkpoint_url(url)
    trust(url)
    ck = load_checkpoint_url(url)
    assert ck['meta']['ratio'] == Fraction(1, 3)
    assert f'loading {url} with weights_only=False (--trust-checkpoint)' in capsys.readouterr().out
    assert os.listdir(zoo_home) == ['extra.pth']   # entered the cache once trusted
    # a zoo name is trusted as given (normalised), and honoured by the loader that
    # resolves it; another name for the same URL is not trusted
    other = served.parent / 'other.pth'
    other.write_bytes(served.read_bytes())
    url2 = 'file://' + str(other)
    monkeypatch.setattr(mc, 'get_mmcls_models', lambda: {'other': url2})
    monkeypatch.setattr(mc, 'get_torchvision_models', lambda: {'other': url2})
    trust('modelzoo://other')   # mmengine's old name for torchvision://
    with safe_loading():
        with pytest.raises(CheckpointError, match='mmcls://other'):
            CheckpointLoader.load_checkpoint('mmcls://other')
        assert CheckpointLoader.load_checkpoint('torchvision://other')['meta']['ratio'] == \
            Fraction(1, 3)
    assert f'loading torchvision://other ({url2}) with weights_only=False' in \
        capsys.readouterr().out


def test_checkpoint_check_hook_trusts_its_load_from_url(zoo_home, tmp_path, capsys):
    from fractions import Fraction
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdag.engine import CheckpointCheckHook
    served = tmp_path / 'served' / 'extra.pth'
    served.parent.mkdir()
    torch.save({'state_dict': _state_dict(), 'meta': {'ratio': Fraction(1, 3)}}, str(served))
    url = 'file://' + str(served)
    runner = SimpleNamespace(cfg=Config(dict(load_from=url)))
    hook = CheckpointCheckHook(trust_checkpoint=True)
    hook.before_run(runner)
    try:   # file:// stands for https://: the same loader
        loader = CheckpointLoader._get_checkpoint_loader('https://download.openmmlab.com/x.pth')
        assert loader(url)['meta']['ratio'] == Fraction(1, 3)
    finally:
        hook.after_run(runner)
    assert 'weights_only=False (--trust-checkpoint)' in capsys.readouterr().out


def test_trust_covers_the_download_not_a_planted_cached_copy(zoo_home, tmp_path):
    from mmdag.checkpoint import load_checkpoint_url, trust
    marker = tmp_path / 'payload_ran'
    served = tmp_path / 'served' / 'model.pth'
    served.parent.mkdir()
    torch.save({'state_dict': _state_dict()}, str(served))
    url = 'file://' + str(served)
    cached = os.path.join(zoo_home, 'model.pth')
    _payload_checkpoint(cached, marker)
    trust(url)
    ck = load_checkpoint_url(url)
    assert not marker.exists() and set(ck) == {'state_dict'}
    assert sorted(os.listdir(zoo_home)) == ['model.pth', 'model.pth.refused']


def _is_mmdag_loader(f):
    """A loader defined in mmdag.checkpoint (or one of its submodules)."""
    return f.__module__ == 'mmdag.checkpoint' or f.__module__.startswith('mmdag.checkpoint.')


def test_every_registered_scheme_is_served_by_mmdag_and_put_back(zoo_home):
    from mmengine.runner.checkpoint import CheckpointLoader as L

    from mmdag import checkpoint as ckpt
    before = dict(L._schemes)
    assert {'', 'http://', 'https://', 'pavi://', *ckpt.ZOO_SCHEMES} <= set(before)
    with ckpt.safe_loading():
        assert set(L._schemes) == set(before)
        assert all(_is_mmdag_loader(f) for f in L._schemes.values())
        with ckpt.safe_loading():   # nested: the inner undo leaves mmdag's loaders
            pass
        assert all(_is_mmdag_loader(f) for f in L._schemes.values())
        for name in ('pavi://model/1', 's3://bucket/model.pth', 'open-mmlab:s3://b/m.pth'):
            with pytest.raises(ckpt.CheckpointError,
                               match='download the file and pass its local path') as e:
                L.load_checkpoint(name)
            assert '\n' not in str(e.value)
    after = dict(L._schemes)
    assert after == before and all(after[p] is before[p] for p in before)
    assert list(L._schemes) == list(before)   # the same order (longest prefix first)


_NODE = r'''
import os, sys
import torch.distributed as dist
import mmdag.checkpoint as ckpt
import mmdag.checkpoint.url as ckpt_url   # where _download is looked up
downloads = []
real = getattr(ckpt_url, '_download', None)
if real is not None:
    ckpt_url._download = lambda url, path, *a: downloads.append(url) or real(url, path, *a)
dist.init_process_group('gloo')
ck = ckpt.load_checkpoint_url(sys.argv[1])   # file://, as the loader of https://
dist.barrier()
print('ok', len(ck['state_dict']), 'downloads', len(downloads), flush=True)
dist.destroy_process_group()
'''


@pytest.mark.parametrize('nodes', [2, 1])
def test_each_node_downloads_once_without_a_shared_file_system(nodes, random_seg_checkpoint,
                                                               tmp_path):
    """Two ranks: on two nodes (each its own TORCH_HOME, local rank 0), both
    download; on one node (one cache, local ranks 0 and 1), rank 0 does."""
    import socket
    url = 'file://' + os.path.abspath(random_seg_checkpoint)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        home = tmp_path / (f'node{rank}' if nodes == 2 else 'node0')
        env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE='2',
                   RANK=str(rank), LOCAL_RANK=str(rank if nodes == 1 else 0),
                   TORCH_HOME=str(home), MMENGINE_HOME=str(tmp_path / 'mmengine'),
                   PYTHONWARNINGS='ignore')
        procs.append(subprocess.Popen([sys.executable, '-c', _NODE, url], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    got = [o[0].split()[-1] for o in outs]
    assert got == (['1', '1'] if nodes == 2 else ['1', '0']), outs
    for rank in range(nodes):
        assert os.listdir(tmp_path / f'node{rank}' / 'hub' / 'checkpoints') == ['random_seg.pth']


@pytest.mark.parametrize('case', ['open-mmlab', 'mmcls', 's3'])
def test_tools_test_refuses_a_zoo_payload_in_one_line(case, tiny_voc, random_seg_checkpoint,
                                                      tmp_path):
    from mmengine.runner import checkpoint as mc
    name = {'open-mmlab': 'open-mmlab://resnet50_v1c', 'mmcls': 'mmcls://resnet50',
            's3': 's3://bucket/model.pth'}[case]
    marker = tmp_path / 'payload_ran'
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    if case != 's3':
        table = mc.get_external_models() if case == 'open-mmlab' else mc.get_mmcls_models()
        cached = str(cache / os.path.basename(table[name.split('://')[1]]))
        ck = torch.load(random_seg_checkpoint, weights_only=True)
        ck['meta'] = {'payload': _Payload(marker)}
        cache.mkdir(parents=True)
        torch.save(ck, cached)
    wd = tmp_path / 'wd'
    res = run_tool(['tools/test.py', TINY, name, '--attack', 'none', '--work-dir', str(wd),
                    '--cfg-options', *data_root_opts(tiny_voc),
                    'test_dataloader.dataset.indices=1'],
                   env={'TORCH_HOME': str(tmp_path / 'torch_home'),
                        'MMENGINE_HOME': str(tmp_path / 'mmengine_home')}, check=False)
    err = [ln for ln in res.stderr.strip().splitlines() if ln.startswith('error: ')]
    assert res.returncode == 2 and len(err) == 1, res.stdout[-1500:] + res.stderr[-3000:]
    print(f'BAD-INPUT {case}: {err[0]}')  # docs/bad_inputs.md quotes these
    assert name in err[0] and 'Traceback' not in res.stderr
    if case == 's3':
        assert 'download the file and pass its local path' in err[0]
    else:
        assert '--trust-checkpoint' in err[0] and f'{cached}.refused' in err[0]
        assert not os.path.exists(cached)
    assert not marker.exists()


@pytest.mark.slow   # two tools/train.py runs: about 20 s on a CPU
def test_tools_train_refuses_a_payload_load_from_and_trusts_it_by_name(
        tiny_voc, random_seg_checkpoint, tmp_path):
    marker = tmp_path / 'payload_ran'
    ck = torch.load(random_seg_checkpoint, weights_only=True)
    ck['meta'] = {'payload': _Payload(marker)}
    path = str(tmp_path / 'init.pth')
    torch.save(ck, path)
    opts = ['--cfg-options', f'load_from={path}', 'train_cfg.max_iters=1',
            'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
            *(f'{k}.dataset.data_root={tiny_voc}' for k in ('train_dataloader', 'val_dataloader',
                                                            'test_dataloader'))]
    res = run_tool(['tools/train.py', TINY, '--work-dir', str(tmp_path / 'a'), *opts], check=False)
    err = [ln for ln in res.stderr.strip().splitlines() if ln.startswith('error: ')]
    assert res.returncode == 1 and len(err) == 1, res.stdout[-1500:] + res.stderr[-3000:]
    assert path in err[0] and '--trust-checkpoint NAME (tools/train.py)' in err[0]
    assert not marker.exists() and 'Traceback' not in res.stderr
    # trusted by the name the config gives: loaded fully (the payload runs, as
    # the user accepted), with a line saying so, and the run trains
    res = run_tool(['tools/train.py', TINY, '--work-dir', str(tmp_path / 'b'),
                    '--trust-checkpoint', path, *opts])
    assert marker.exists() and 'weights_only=False (--trust-checkpoint)' in res.stdout + res.stderr
    assert (tmp_path / 'b' / 'iter_1.pth').is_file()


def test_the_restricted_unpickler_of_older_torch_loads_and_refuses_the_same(
        trained_seg_checkpoint, tmp_path, monkeypatch):
    """torch < 2.5 has no ``safe_globals``: mmdag's restricted unpickler
    (forced here on today's torch) must load what the weights-only path loads
    and refuse what it refuses, with the same line, running nothing."""
    from mmdag import checkpoint as ckpt
    from mmdag.checkpoint import weights_only  # where TORCH_SAFE_GLOBALS is looked up

    class Sneaky:
        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    marker = tmp_path / 'payload_ran'
    bad = {'payload': _payload_checkpoint(tmp_path / 'payload.pth', marker),
           'getattr': str(tmp_path / 'sneaky.pth')}
    torch.save({'x': Sneaky()}, bad['getattr'])

    def outcomes():
        ck = ckpt.load_checkpoint_file(trained_seg_checkpoint)
        errors = {}
        for name, path in bad.items():
            with pytest.raises(ckpt.CheckpointError) as e:
                ckpt.load_checkpoint_file(path)
            errors[name] = str(e.value)
        return ck, errors

    if not weights_only.TORCH_SAFE_GLOBALS:
        pytest.skip('this torch has no safe_globals: the restricted unpickler is its only '
                    'weights-only path, which the other tests here exercise')
    want, want_errors = outcomes()
    monkeypatch.setattr(weights_only, 'TORCH_SAFE_GLOBALS', False)
    monkeypatch.setattr(torch, 'load', _no_weights_only(torch.load))
    got, got_errors = outcomes()
    assert not marker.exists()
    assert got_errors['payload'] == want_errors['payload'] and '(io.open)' in got_errors['payload']
    assert 'tofile' in got_errors['getattr']
    assert got.keys() == want.keys()
    assert all(torch.equal(got['state_dict'][k], v) for k, v in want['state_dict'].items())
    buf, ref = (next(iter(c['message_hub']['log_scalars'].values())) for c in (got, want))
    assert buf.data[0].tolist() == ref.data[0].tolist()
    assert str(got['meta']) == str(want['meta'])


def _no_weights_only(load):
    """torch.load as on an old torch: weights_only=True must not be asked for."""
    def wrapped(*args, **kwargs):
        assert kwargs.get('weights_only') is False and kwargs.get('pickle_module') is not None
        return load(*args, **kwargs)
    return wrapped


def test_a_failed_download_is_one_line_and_leaves_nothing(zoo_home):
    from mmdag import checkpoint as ckpt
    url = 'http://127.0.0.1:9/nothing_here.pth'   # the discard port: connection refused
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_checkpoint_url(url)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith(f'checkpoint {url}: the download failed (')
    assert msg.endswith('check the URL and the network, or download the file and pass its '
                        'local path')
    print(f'BAD-INPUT download_failed: error: {msg}')   # docs/bad_inputs.md quotes it
    # the hidden temporary it downloaded into is gone
    assert not os.path.isdir(zoo_home) or os.listdir(zoo_home) == []
