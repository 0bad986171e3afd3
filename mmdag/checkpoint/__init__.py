"""Loading checkpoints safely: weights only, unless the user trusts the file.

A ``.pth`` file is a pickle, and unpickling can run any code; torch's own
``weights_only=True`` refuses what mmengine's Runner writes, and mmengine's
URL loader unpickles downloads fully. Every loader here is
``weights_only=True`` with :data:`SAFE_GLOBALS`, the allow-list Runner-written
checkpoints need; a file that needs more is refused in one line unless its
name was passed to :func:`trust`. Nothing changes at import:
:func:`safe_loading` (or :func:`install` and its undo) routes mmengine's
``CheckpointLoader`` through these loaders while a block runs.

The submodules, by job:

- :mod:`.weights_only`: the allow-list (:data:`SAFE_GLOBALS`), the restricted
  unpickler of torch < 2.5 and ``_load_weights_only``;
- :mod:`.local`: :class:`CheckpointError`, :func:`trust`, the refusal line
  and :func:`load_checkpoint_file` (a local file);
- :mod:`.url`: :func:`load_checkpoint_url` (an http(s) URL, through torch's
  hub cache, one download per node);
- :mod:`.zoo`: :func:`load_checkpoint_zoo` (``open-mmlab://``, ``mmcls://``,
  ``torchvision://``... names) and the refusal of every other scheme;
- :mod:`.registration`: :func:`safe_loading` and :func:`install`, which
  serve mmengine's ``CheckpointLoader`` schemes by mmdag.

Names that tests patch are looked up in the submodule that uses them
(``_TRUSTED`` in :mod:`.local`, ``TORCH_SAFE_GLOBALS`` in
:mod:`.weights_only`, ``_download`` in :mod:`.url`): patch them there.
"""
from .local import (_ALIASES, _SCHEME, _TRUSTED, CheckpointError, _first_line,  # noqa: F401
                    _load_local, _load_trusted, _refusal, _trust_key, _trusted,
                    load_checkpoint_file, trust)
from .registration import _loader_for, _sorted, install, safe_loading  # noqa: F401
from .url import (_NOT_A_CHECKPOINT, REFUSED_SUFFIX, _download, _fetch_and_load,  # noqa: F401
                  _load_cached, _load_url, _local_rank, _looks_like_checkpoint, _move_aside,
                  _remove, load_checkpoint_url)
from .weights_only import (_NOT_ALLOWED, TORCH_SAFE_GLOBALS, _allowed_names,  # noqa: F401
                           _history_buffer_getattr, _load_weights_only, _NotWeights,
                           _restricted_globals, _RestrictedPickle, _RestrictedUnpickler,
                           _safe_globals, _unsafe_globals)
from .zoo import (URL_SCHEMES, ZOO_SCHEMES, load_checkpoint_zoo,  # noqa: F401
                  refuse_checkpoint_scheme, resolve_zoo_name, unsupported_scheme_message)


def __getattr__(name):  # SAFE_GLOBALS is built on first use (mmengine import)
    if name == 'SAFE_GLOBALS':
        return _safe_globals()
    raise AttributeError(name)
