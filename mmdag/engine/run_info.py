"""What a run records about itself: the test pipeline's frame (saved with
each perturbation) and the environment the numbers were measured in."""
from mmengine.dist import get_world_size


def pipeline_frame(runner) -> dict:
    """Channel order of the loaded image and the ``Resize`` scale of the
    test pipeline, recorded with each saved perturbation."""
    frame = dict(channel_order='bgr', scale='')
    try:
        pipeline = runner.cfg.test_dataloader.dataset.get('pipeline', None) or []
    except AttributeError:
        pipeline = []
    for t in pipeline:
        kind = str(t.get('type', ''))
        if kind.startswith('Load') and 'Image' in kind and t.get('channel_order'):
            frame['channel_order'] = str(t['channel_order'])
        if 'Resize' in kind and not frame['scale']:
            frame['scale'] = str(t.get('scale', t.get('scale_factor', '')))
    return frame


def environment(model) -> dict:
    """Where the numbers were measured: device, world size and versions."""
    import torch

    from mmdag.version import __version__
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    # the float results of a long attack reproduce bitwise only for the same
    # world size and threads per process (summation order): both are recorded
    env = dict(device=str(device), world_size=get_world_size(), threads=torch.get_num_threads(),
               torch=torch.__version__, cuda=torch.version.cuda, mmdag=__version__)
    if device.type == 'cuda':
        env['device_name'] = torch.cuda.get_device_name(device)
    for pkg in ('mmengine', 'mmcv', 'mmdet', 'mmseg'):
        try:
            env[pkg] = __import__(pkg).__version__
        except ImportError:
            pass
    return env
