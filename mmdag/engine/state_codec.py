"""Data-only files for the resume state: a JSON tree plus numpy arrays in
one ``.npz``, read with ``allow_pickle=False``, so reading one cannot run code.

The tree's values are JSON's own (str, int, float, bool, None, list) or
tagged objects: ``{"t": "tuple"|"dict", "v": ...}``, ``{"t": "ndarray"|
"npscalar"|"bytes", "i": k}`` (numpy arrays and scalars, bytes) and
``{"t": "tensor", "i": k, "dtype": name}`` (torch tensors, restored on the
CPU with their dtype). Any other type is refused when written
(:class:`StateTypeError`).
"""
import io
import json

import numpy as np
import torch

STATE_FORMAT = 2


class StateTypeError(TypeError):
    """A per-image result of a type the state files cannot hold."""


def _encode(x, arrays: list, where: str, key: bool = False):
    """``x`` as a JSON value (see the module), its arrays appended to ``arrays``
    (``key``: a dict key, where arrays and tensors are refused)."""
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is list:
        return [_encode(v, arrays, f'{where}[{i}]') for i, v in enumerate(x)]
    if type(x) is tuple:
        return dict(t='tuple', v=[_encode(v, arrays, f'{where}[{i}]', key)
                                  for i, v in enumerate(x)])
    if type(x) is dict:
        return dict(t='dict', v=[[_encode(k, arrays, f'{where} key {k!r}', key=True),
                                  _encode(v, arrays, f'{where}[{k!r}]')] for k, v in x.items()])
    if type(x) is bytes:   # e.g. the RLE ``counts`` of mmdet's CocoMetric masks
        arrays.append(np.frombuffer(x, dtype=np.uint8))
        return dict(t='bytes', i=len(arrays) - 1)
    # numpy arrays (not their subclasses: masked arrays, matrices) and scalars
    if isinstance(x, np.generic) or (type(x) is np.ndarray and not key):
        a = np.asarray(x)
        if a.dtype.hasobject:
            raise StateTypeError(f'{where}: a numpy {type(x).__name__} of Python objects')
        arrays.append(a)
        return dict(t='npscalar' if isinstance(x, np.generic) else 'ndarray',
                    i=len(arrays) - 1)
    if type(x) is torch.Tensor and not key:
        t = x.detach()
        if t.layout != torch.strided or t.is_quantized:
            raise StateTypeError(f'{where}: a {t.layout} tensor of {t.dtype}')
        t = t.cpu().resolve_conj().resolve_neg()
        try:
            a = t.numpy()
        except (TypeError, RuntimeError):   # no numpy dtype (bfloat16, float8): the bits
            ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
            if t.element_size() not in ints:
                raise StateTypeError(f'{where}: a tensor of {t.dtype}') from None
            a = t.view(ints[t.element_size()]).numpy()
        arrays.append(a)
        return dict(t='tensor', i=len(arrays) - 1, dtype=str(t.dtype).replace('torch.', ''))
    raise StateTypeError(f'{where}: a {type(x).__module__}.{type(x).__qualname__}')


def _decode(x, arrays):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict):
        raise ValueError(f'unexpected {type(x).__name__}')
    tag = x.get('t')
    if tag == 'tuple':
        return tuple(_decode(v, arrays) for v in x['v'])
    if tag == 'dict':
        return {_decode(k, arrays): _decode(v, arrays) for k, v in x['v']}
    if tag in ('ndarray', 'npscalar', 'tensor', 'bytes'):
        a = arrays[f"a{int(x['i'])}"]
        if tag == 'bytes':
            return a.tobytes()
        if not a.flags.writeable:
            a = a.copy()
        if tag == 'ndarray':
            return a
        if tag == 'npscalar':
            return a[()]
        dtype = getattr(torch, str(x['dtype']), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown tensor dtype {x['dtype']!r}")
        t = torch.from_numpy(a)
        return t if t.dtype == dtype else t.view(dtype)
    raise ValueError(f'unknown tag {tag!r}')


def encode_state(obj) -> bytes:
    """``obj`` as the bytes of a state file (an ``.npz``: the JSON tree and
    its arrays); :class:`StateTypeError` for a value of another type."""
    arrays: list = []
    tree = json.dumps(dict(format=STATE_FORMAT, tree=_encode(obj, arrays, 'state')),
                      separators=(',', ':'))
    buffer = io.BytesIO()
    np.savez(buffer, structure=np.frombuffer(tree.encode('utf-8'), dtype=np.uint8),
             **{f'a{i}': a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def decode_state(source):
    """What :func:`encode_state` wrote, from a path or the bytes; never
    unpickles (``allow_pickle=False``)."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    with np.load(source, allow_pickle=False) as arrays:
        head = json.loads(bytes(arrays['structure']).decode('utf-8'))
        if not isinstance(head, dict) or head.get('format') != STATE_FORMAT:
            raise ValueError('not a state file of this format')
        return _decode(head['tree'], arrays)
