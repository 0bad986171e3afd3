"""CheckpointCheckHook: load the run's checkpoint safely and refuse one that
does not fit the model."""
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmdag import checkpoint as ckpt
from mmdag.contract import CheckpointFit, unwrap
from mmdag.registry import HOOKS
from .wiring import publish


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Safe checkpoint loading and a fit check, for the run it belongs to.

    While the run lasts, every scheme of mmengine's ``CheckpointLoader`` goes
    through :mod:`mmdag.checkpoint` (:func:`~mmdag.checkpoint.install`): local
    files, http(s) URLs and ``open-mmlab://``, ``openmmlab://``, ``mmcls://``,
    ``torchvision://``, ``modelzoo://`` names load with ``weights_only=True``
    and the allow-list that Runner-written checkpoints need (a file holding
    anything else is refused in one line unless ``trust_checkpoint``; a
    refused download never stays in torch's hub cache); other schemes
    (``pavi://``, ``s3://``...) are refused.

    After the checkpoint is loaded and before the first batch, the hook
    counts the model's parameters that it did not set: those missing from
    the file, and those whose shape differs (mmengine only warns about both).
    It refuses the run when they hold at least ``max_unloaded`` of the
    model's weights, or all of a top-level part (e.g. every ``decode_head``
    weight: a detector's checkpoint given to a segmentor), naming the counts;
    a smaller gap (a classifier for another number of classes) is logged as
    a warning. Buffers (running statistics, position indices) are counted in
    the message, not in the decision. A run without ``load_from`` is not
    checked.

    Args:
        trust_checkpoint (bool): load ``load_from`` (a path, a URL or a zoo
            name, as given) with ``weights_only=False`` (it may run code stored
            in the file; a URL's file only as downloaded from it). Defaults to
            False.
        allow_partial (bool): only warn about a checkpoint that does not fit.
            Defaults to False.
        max_unloaded (float): fraction of the parameters' elements that may
            stay unloaded before the run is refused. Defaults to 0.1.
    """

    # after AttackHook: a model no adapter fits is the first thing to say
    priority = 'LOWEST'

    def __init__(self, trust_checkpoint: bool = False, allow_partial: bool = False,
                 max_unloaded: float = 0.1) -> None:
        self.trust_checkpoint = trust_checkpoint
        self.allow_partial = allow_partial
        self.max_unloaded = max_unloaded
        self._restore = None
        self._versions: Optional[dict] = None

    def before_run(self, runner) -> None:
        load_from = runner.cfg.get('load_from', None) if hasattr(runner, 'cfg') else None
        if self.trust_checkpoint and load_from:
            ckpt.trust(load_from)
        if self._restore is None:
            self._restore = ckpt.install()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # every tensor that load_state_dict copies into gets its version bumped
        model = _unwrap(runner.model)
        self._versions = {k: t._version for k, t in _tensors(model).items()}

    def before_test(self, runner) -> None:
        self._check(runner)

    def before_val(self, runner) -> None:
        self._check(runner)

    def after_run(self, runner) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None

    def _check(self, runner) -> None:
        if self._versions is None:
            return
        model = _unwrap(runner.model)
        versions, self._versions = self._versions, None
        report = fit_report(model, versions)
        # the attack report carries it (a partial checkpoint's numbers say so)
        publish(runner.message_hub, CheckpointFit(
            unloaded_params=report['unloaded_params'], params=report['params'],
            unloaded_buffers=report['unloaded_buffers'],
            unloaded_fraction=report['unloaded_fraction'],
            missing_parts=report['missing_parts'], allow_partial=self.allow_partial))
        if not report['unloaded_params'] and not report['unloaded_buffers']:
            return
        msg = describe(report, runner.cfg.get('load_from', None))
        bad = (report['unloaded_fraction'] >= self.max_unloaded or report['missing_parts'])
        if bad and not self.allow_partial:
            raise ckpt.CheckpointError(
                msg + ': pass the checkpoint trained for this config, or '
                '--allow-partial-checkpoint (CheckpointCheckHook allow_partial=True) '
                'to run it anyway')
        if is_main_process():
            runner.logger.warning(msg)


def _unwrap(model):
    return unwrap(model)


def _tensors(model) -> dict:
    """What a checkpoint can set: the state dict's tensors (non-persistent
    buffers, e.g. a data preprocessor's mean, are never loaded), marked
    ``p:`` (parameters) and ``b:`` (buffers)."""
    params = {k for k, _ in model.named_parameters()}
    return {(f'p:{k}' if k in params else f'b:{k}'): t
            for k, t in model.state_dict(keep_vars=True).items()}


def fit_report(model, versions: dict) -> dict:
    """Which of the model's tensors kept the version they had before loading."""
    tensors = _tensors(model)
    unloaded = [k for k, t in tensors.items() if k in versions and t._version == versions[k]]
    params = {k: t for k, t in tensors.items() if k.startswith('p:')}
    unloaded_p = [k for k in unloaded if k.startswith('p:')]
    total = sum(t.numel() for t in params.values()) or 1
    parts = {}
    for k, t in params.items():
        top = k[2:].split('.', 1)[0]
        parts.setdefault(top, []).append(k)
    missing_parts = sorted(top for top, keys in parts.items()
                           if all(k in set(unloaded_p) for k in keys))
    return dict(params=len(params), unloaded_params=len(unloaded_p),
                unloaded_buffers=len(unloaded) - len(unloaded_p),
                unloaded_fraction=sum(params[k].numel() for k in unloaded_p) / total,
                missing_parts=missing_parts,
                examples=[k[2:] for k in unloaded_p[:3]])


def describe(report: dict, filename) -> str:
    parts = (f"; nothing for {', '.join(report['missing_parts'])}"
             if report['missing_parts'] else '')
    examples = f" (e.g. {', '.join(report['examples'])})" if report['examples'] else ''
    return (f"checkpoint {filename} does not fit the model: {report['unloaded_params']} of its "
            f"{report['params']} parameter tensors ({100 * report['unloaded_fraction']:.1f}% of "
            f"the weights) are missing from it or have another shape{examples}{parts}; "
            f"{report['unloaded_buffers']} buffers too")
