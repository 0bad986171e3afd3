"""The documentation checker (``tools/check_docs.py``): the links of
README.md and docs/**/*.md, and the examples marked runnable.

--links: every relative link and image of README.md and docs/**/*.md
(``[text](target)``, ``![alt](target)``, ``[name]: target`` and
``<img src=...>`` / ``<a href=...>``) must name an existing file or folder,
relative to the Markdown file; a ``#anchor`` must name a heading of the
target Markdown file (or of the same file), slugged as MkDocs and GitHub do
(lowercase, punctuation removed, spaces to '-'; either slug is accepted).
Links with a scheme (https:, mailto:) are not fetched. Code spans and fenced
code blocks are skipped. Every bash, sh, shell or python block is marked
runnable (below) or preceded by ``<!-- not run by the docs check: why -->``,
so that every command the docs show is run or says why not. Each broken
link or unmarked block is one line ``FILE:LINE: ...``; exit code 1 when
there is any.

--run: every fenced block that directly follows a line holding only
``<!-- runnable -->`` is run, in file order (README.md first, then docs/ by
path), in ONE fresh temporary directory:

- ```bash / ```sh / ```shell blocks with ``bash -euo pipefail``,
  ```python blocks with this interpreter;
- the directory is prepared first, as a clone after ``make demo`` would be,
  by a small demo run there: ``python <repo>/tools/demo.py --tasks seg
  --num-train 24 --num-val 4 --train-iters 30 --attack-options max_iters=5``
  (it writes data/synthetic_voc and work_dirs/demo/seg_train/model.pth, the
  paths the docs name), and gets the symlinks ``tools`` and ``configs`` to
  the repository's, so that ``python tools/test.py configs/...`` works there
  as in a clone;
- each block runs with that directory as its working directory, this
  interpreter's bin folder first on PATH (``python`` is this interpreter),
  the repository first on PYTHONPATH, and MMDAG_REPO=<repository root>.

Each block is reported as ``FILE:LINE  pass|FAIL  SECONDS s``, a failing
one with the end of its output; exit code 1 when one failed. Mark as
runnable only cheap blocks (well under a minute each on 2 CPU cores).

Every function takes the repository's root (the clone: README.md and docs/
are not installed with the package).
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple
from urllib.parse import unquote

#: the comment line that marks the next fenced block as runnable
MARKER = '<!-- runnable -->'
#: how a command block that the check does not run says why (the rest of
#: the line gives the reason)
NOT_RUN = '<!-- not run by the docs check:'
#: the languages a runnable block may have, and how each runs
RUNNERS = {'bash': 'bash', 'sh': 'bash', 'shell': 'bash', 'python': 'python', 'py': 'python'}
#: the demo run that prepares the directory the blocks run in
PREPARE = ['--tasks', 'seg', '--num-train', '24', '--num-val', '4', '--train-iters', '30',
           '--attack-options', 'max_iters=5']

FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)')
ATX = re.compile(r'^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
SETEXT = re.compile(r'^ {0,3}(=+|-+)\s*$')
CODE_SPAN = re.compile(r'(`+)(.+?)\1')
# [text](target "title") and ![alt](target); text may hold one level of brackets
INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]'
                         r'\(\s*(<[^>]*>|[^()\s]+)(?:\s+"[^"]*")?\s*\)')
REF_DEF = re.compile(r'^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)')
HTML_LINK = re.compile(r'<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*["\']([^"\']+)["\']', re.I)
SCHEME = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:')


class Block(NamedTuple):
    """A runnable block: its file (relative to the root), the line of its
    opening fence (1-based), its language and its code."""
    path: str
    line: int
    lang: str
    code: str


def markdown_files(root: str) -> List[str]:
    """README.md, then every .md under docs/, sorted; paths relative to root."""
    files = ['README.md'] if osp.isfile(osp.join(root, 'README.md')) else []
    docs = osp.join(root, 'docs')
    found = []
    for d, dirs, names in os.walk(docs):
        dirs[:] = sorted(x for x in dirs if not x.startswith('.'))
        found += [osp.relpath(osp.join(d, n), root) for n in names if n.endswith('.md')]
    return files + sorted(found)


def _lines_outside_code(text: str, blank_spans: bool = True) -> List[Tuple[int, str]]:
    """(line number, line) of the lines not inside a fenced code block, with
    code spans blanked out unless ``blank_spans`` is False."""
    out, fence = [], None
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) <= {fence[0]}:
                fence = None
            continue
        out.append((i, CODE_SPAN.sub(lambda s: ' ' * len(s.group(0)), line) if blank_spans
                    else line))
    return out


def _heading_text(raw: str) -> str:
    """A heading's visible text: code spans keep their content, links their
    text; emphasis marks and inline HTML go."""
    text = CODE_SPAN.sub(lambda m: m.group(2), raw)
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', text)
    text = re.sub(r'<[^>]+>', '', text)
    return text.replace('**', '').replace('*', '')


def slugs(text: str) -> Tuple[str, str]:
    """The anchors MkDocs (Python-Markdown's toc) and GitHub give a heading
    with this visible text."""
    norm = unicodedata.normalize('NFKD', text).encode('ascii', 'ignore').decode('ascii')
    mk = re.sub(r'[^\w\s-]', '', norm).strip().lower()
    mk = re.sub(r'[-\s]+', '-', mk)
    gh = re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')
    return mk, gh


def headings(text: str) -> List[Tuple[int, str]]:
    """(line number, visible text) of the ATX and setext headings outside code."""
    lines = _lines_outside_code(text, blank_spans=False)
    out = []
    for k, (num, line) in enumerate(lines):
        m = ATX.match(line)
        if m:
            out.append((num, _heading_text(m.group(2))))
        elif (k + 1 < len(lines) and lines[k + 1][0] == num + 1 and line.strip()
              and SETEXT.match(lines[k + 1][1])
              and not line.lstrip().startswith(('-', '*', '|', '>'))):
            out.append((num, _heading_text(line.strip())))
    return out


def anchors(text: str) -> Set[str]:
    """Every anchor the headings of a Markdown text get, in both slug
    styles; repeated headings numbered as MkDocs (_1) and GitHub (-1) do."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    for _, visible in headings(text):
        for style, slug in zip(('mk', 'gh'), slugs(visible)):
            n = seen.get(style + slug, 0)
            seen[style + slug] = n + 1
            out.add(slug if n == 0 else (f'{slug}_{n}' if style == 'mk' else f'{slug}-{n}'))
    return out


def links(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    found = []
    for num, line in _lines_outside_code(text):
        for m in INLINE_LINK.finditer(line):
            found.append((num, m.group(1).strip('<>')))
        m = REF_DEF.match(line)
        if m:
            found.append((num, m.group(1).strip('<>')))
        for m in HTML_LINK.finditer(line):
            found.append((num, m.group(1)))
    return found


def check_links(root: str, files: Optional[Sequence[str]] = None) -> List[str]:
    """One line per broken link (or misplaced runnable marker) of ``files``
    (default: :func:`markdown_files`), relative to ``root``."""
    files = markdown_files(root) if files is None else list(files)
    cache: Dict[str, Set[str]] = {}

    def anchors_of(path: str) -> Set[str]:
        if path not in cache:
            with open(path, encoding='utf-8') as f:
                cache[path] = anchors(f.read())
        return cache[path]

    problems = []
    for rel in files:
        path = osp.join(root, rel)
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for num, target in links(text):
            if SCHEME.match(target) or target.startswith('//'):
                continue
            where = f'{rel}:{num}'
            ref, _, anchor = target.partition('#')
            ref, anchor = unquote(ref), unquote(anchor)
            if ref.startswith('/'):
                problems.append(f'{where}: absolute link {target!r}: use a path relative to {rel}')
                continue
            dest = osp.normpath(osp.join(osp.dirname(path), ref)) if ref else path
            if not osp.exists(dest):
                problems.append(f'{where}: broken link {target!r}: '
                                f'{osp.relpath(dest, root)} does not exist')
                continue
            if anchor and dest.endswith('.md') and anchor not in anchors_of(dest):
                problems.append(f'{where}: broken link {target!r}: '
                                f'{osp.relpath(dest, root)} has no heading with anchor #{anchor}')
        problems += [f'{rel}:{line}: {MARKER} is not followed by a fenced block'
                     for line in _loose_markers(text)]
        problems += [f'{rel}:{line}: a {lang} block neither marked {MARKER} nor '
                     f'{NOT_RUN} <why> -->'
                     for line, lang in unmarked_blocks(text)]
    return problems


def unmarked_blocks(text: str) -> List[Tuple[int, str]]:
    """The command blocks (bash, shell or python) of a Markdown text that
    are neither marked runnable nor say why the check does not run them:
    (fence line, language). Every command the docs show is run or says why not."""
    lines = text.splitlines()
    out, fence, previous = [], None, ''
    for num, line in enumerate(lines, 1):
        m = FENCE.match(line.lstrip()) if fence is None else None
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) <= {fence[0]}:
                fence = None
        elif m:
            fence, lang = m.group(1), m.group(2).lower()
            if lang in RUNNERS and not (previous == MARKER or previous.startswith(NOT_RUN)):
                out.append((num, lang))
        if line.strip() and fence is None and not m:
            previous = line.strip()
        elif m:
            previous = ''
    return out


def _scan_blocks(text: str) -> Tuple[List[Tuple[int, str, str]], List[int]]:
    """The runnable blocks of a Markdown text as (fence line, language,
    code), and the lines of markers that precede no fenced block."""
    lines = text.splitlines()
    blocks, loose = [], []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        marker = i
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        m = FENCE.match(lines[j]) if j < len(lines) else None
        if not m:
            loose.append(marker + 1)
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        body, k = [], j + 1
        while k < len(lines):
            stripped = lines[k].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) <= {fence[0]}:
                break
            body.append(lines[k])
            k += 1
        blocks.append((j + 1, lang, '\n'.join(body) + '\n'))
        i = k + 1
    return blocks, loose


def _loose_markers(text: str) -> List[int]:
    return _scan_blocks(text)[1]


def runnable_blocks(root: str, files: Optional[Sequence[str]] = None) -> List[Block]:
    """The blocks marked runnable, in file order (:func:`markdown_files`)."""
    out = []
    for rel in (markdown_files(root) if files is None else files):
        with open(osp.join(root, rel), encoding='utf-8') as f:
            text = f.read()
        out += [Block(rel, line, lang, code) for line, lang, code in _scan_blocks(text)[0]]
    return out


def block_env(root: str) -> Dict[str, str]:
    """The environment the blocks run in (see the module docstring)."""
    env = dict(os.environ)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env['MMDAG_REPO'] = root
    return env


def prepare(workdir: str, root: str) -> float:
    """Make ``workdir`` look like a clone after ``make demo``: the tools and
    configs links and a small demo run. Returns its seconds."""
    for name in ('tools', 'configs'):
        os.symlink(osp.join(root, name), osp.join(workdir, name))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, osp.join(root, 'tools', 'demo.py'), *PREPARE],
                         cwd=workdir, env=block_env(root), capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'preparing {workdir} failed (exit {res.returncode}):\n'
                           f'{res.stdout[-3000:]}\n{res.stderr[-3000:]}')
    return time.perf_counter() - t0


def run_block(block: Block, workdir: str, scripts: str, root: str,
              timeout: float = 600) -> Tuple[bool, float, str]:
    """Run one block in ``workdir``; (passed, seconds, output)."""
    runner = RUNNERS[block.lang]
    name = re.sub(r'[^\w.-]', '_', f'{block.path}_{block.line}')
    script = osp.join(scripts, name + ('.sh' if runner == 'bash' else '.py'))
    with open(script, 'w') as f:
        f.write(block.code)
    cmd = ['bash', '-euo', 'pipefail', script] if runner == 'bash' else [sys.executable, script]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=workdir, env=block_env(root), capture_output=True,
                             text=True, timeout=timeout)
        ok, output = res.returncode == 0, res.stdout + res.stderr
        if not ok:
            output += f'\n(exit {res.returncode})'
    except subprocess.TimeoutExpired as e:
        ok = False
        output = f'{e.stdout or ""}{e.stderr or ""}\n(timed out after {timeout:.0f} s)'
    return ok, time.perf_counter() - t0, output


def run_all(root: str, keep: bool = False, timeout: float = 600) -> int:
    """``--run``: every runnable block, in a directory :func:`prepare` made,
    each reported as one line; 1 when one failed (or none is marked, or one
    is of a language not in :data:`RUNNERS`), else 0. ``keep``: keep the
    directory; ``timeout``: seconds per block."""
    blocks = runnable_blocks(root)
    bad = [b for b in blocks if b.lang not in RUNNERS]
    if bad:
        for b in bad:
            print(f'{b.path}:{b.line}: a runnable block must be one of {sorted(RUNNERS)}, '
                  f'not {b.lang or "unlabelled"!r}')
        return 1
    if not blocks:
        print(f'no block is marked {MARKER}: nothing to run')
        return 1
    workdir = tempfile.mkdtemp(prefix='mmdag_docs_')
    scripts = tempfile.mkdtemp(prefix='mmdag_docs_blocks_')
    failed = 0
    try:
        print(f'preparing {workdir} (tools/demo.py {" ".join(PREPARE)}) ...', flush=True)
        print(f'prepared in {prepare(workdir, root):.1f} s', flush=True)
        total = 0.0
        for b in blocks:
            ok, seconds, output = run_block(b, workdir, scripts, root, timeout)
            total += seconds
            print(f'{b.path}:{b.line}  {"pass" if ok else "FAIL"}  {seconds:.1f} s', flush=True)
            if not ok:
                failed += 1
                print('    ' + '\n    '.join(output.strip().splitlines()[-40:]), flush=True)
        print(f'{len(blocks)} runnable blocks, {failed} failed, {total:.1f} s')
    finally:
        shutil.rmtree(scripts, ignore_errors=True)
        if keep:
            print(f'kept {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def report_links(root: str) -> int:
    """``--links``: print one line per broken link of :func:`markdown_files`
    and a count; 1 when any is broken, else 0."""
    files = markdown_files(root)
    problems = check_links(root, files)
    for line in problems:
        print(line)
    n = 0
    for rel in files:
        with open(osp.join(root, rel), encoding='utf-8') as f:
            n += len(links(f.read()))
    print(f'links: {n} in {len(files)} files, {len(problems)} broken')
    return 1 if problems else 0
