"""One line for an exception: its type, message and where it was raised
(the survey's and the zoo benchmark's failure reasons)."""
import os
import os.path as osp
import traceback


def _short_path(path: str) -> str:
    path = path.replace(os.sep, '/')
    for mark in ('/site-packages/', '/dist-packages/'):
        if mark in path:
            return path.split(mark, 1)[1]
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))).replace(os.sep, '/') + '/'
    return path[len(repo):] if path.startswith(repo) else path


def _first_line(e: BaseException) -> str:
    msg = str(e).strip()
    return msg.splitlines()[0].strip() if msg else ''


def describe_exception(e: BaseException, frames: bool = False) -> str:
    """``Type: first line of the message``; with ``frames`` also the
    innermost traceback frame (and the innermost mmdag frame if another)."""
    text = f'{type(e).__name__}: {_first_line(e)}'.rstrip(': ')
    if frames:
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            where = [f'{_short_path(tb[-1].filename)}:{tb[-1].lineno}']
            own = [f for f in tb if '/mmdag/' in f.filename.replace(os.sep, '/')]
            if own and own[-1] is not tb[-1]:
                where.append(f'{_short_path(own[-1].filename)}:{own[-1].lineno}')
            text += f' (at {"; ".join(where)})'
    if e.__cause__ is not None:   # e.g. mmengine's ImportError of a custom import
        text += f' [from {type(e.__cause__).__name__}: {_first_line(e.__cause__)}]'
    return text
