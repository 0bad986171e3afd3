"""The docs checker (mmdag.devtools.docs_check, tools/check_docs.py): the link
checker and the runnable-block extractor (fast: no model), the repository's
own README.md and docs/ links, and the tool's command line."""
import ast
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

from mmdag.devtools import docs_check as check_docs
from conftest import ROOT

README = """# Project

![a picture](docs/images/pic.png)
See [the guide](docs/guide.md), [its options](docs/guide.md#the-options-flag),
[a section here](#project) and [the site](https://example.org/missing.md).
[Gone](docs/gone.md) and [no anchor](docs/guide.md#nothing-like-this).
`[in a code span](docs/nope.md)`

<!-- not run by the docs check: an example -->
```shell
cat [not a link](docs/nope2.md)
```
"""

GUIDE = """# Guide

## The `--options` flag

Back to [the README](../README.md#project), [a heading](#guide) and
[the same twice](#twice_1) / [GitHub style](#twice-1).

## Twice

## Twice

![missing picture](images/none.png)
<img src="images/pic.png" alt="html image">
[defined]: ../docs/guide.md#the-options-flag
"""


def _tree(tmp_path, readme=README, guide=GUIDE):
    (tmp_path / 'docs' / 'images').mkdir(parents=True)
    (tmp_path / 'docs' / 'images' / 'pic.png').write_bytes(b'png')
    (tmp_path / 'README.md').write_text(readme)
    (tmp_path / 'docs' / 'guide.md').write_text(guide)
    return tmp_path


def test_markdown_files_readme_first_then_docs(tmp_path):
    _tree(tmp_path)
    (tmp_path / 'docs' / 'a.md').write_text('# A\n')
    assert check_docs.markdown_files(str(tmp_path)) == ['README.md', 'docs/a.md', 'docs/guide.md']


def test_link_checker_finds_broken_links_and_unknown_anchors(tmp_path):
    root = str(_tree(tmp_path))
    problems = check_docs.check_links(root)
    assert len(problems) == 3, problems
    gone, anchor, picture = problems
    assert gone.startswith('README.md:6: broken link') and 'docs/gone.md does not exist' in gone
    assert anchor.startswith('README.md:6: broken link') and '#nothing-like-this' in anchor
    assert picture.startswith('docs/guide.md:12: broken link') and 'images/none.png' in picture


def test_link_checker_accepts_good_links(tmp_path):
    good_guide = GUIDE.replace('![missing picture](images/none.png)\n', '')
    good_readme = README.replace(
        '[Gone](docs/gone.md) and [no anchor](docs/guide.md#nothing-like-this).\n', '')
    root = str(_tree(tmp_path, good_readme, good_guide))
    assert check_docs.check_links(root) == []


def test_absolute_links_are_refused(tmp_path):
    root = str(_tree(tmp_path, README + '\n[abs](/docs/guide.md)\n', '# Guide\n'))
    problems = [p for p in check_docs.check_links(root) if 'absolute' in p]
    assert len(problems) == 1 and problems[0].startswith('README.md:14:')


def test_slugs_follow_mkdocs_and_github():
    assert check_docs.slugs('Batches, image sizes, precision') == \
        ('batches-image-sizes-precision',) * 2
    assert check_docs.slugs("The demo's findings") == ('the-demos-findings',) * 2
    # MkDocs collapses the hyphens a removed character leaves, GitHub keeps them
    assert check_docs.slugs('ORIG / ADVR') == ('orig-advr', 'orig--advr')
    text = ('# `tools/test.py` and the *mmdag* command\n\n'
            '```bash\n# not a heading\n```\nTitle\n=====\n')
    assert check_docs.anchors(text) == {'toolstestpy-and-the-mmdag-command', 'title'}


RUNNABLE = """# Examples

<!-- runnable -->
```bash
echo one
```

```bash
echo not marked
```

<!-- runnable -->

```python
print('two')
```

<!-- runnable -->
This marker precedes no block.

```shell
echo not marked either
```
"""


def test_block_extractor_finds_only_the_marked_blocks(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'README.md').write_text('# R\n\n<!-- runnable -->\n```sh\necho zero\n```\n')
    (tmp_path / 'docs' / 'ex.md').write_text(RUNNABLE)
    blocks = check_docs.runnable_blocks(str(tmp_path))
    assert [(b.path, b.line, b.lang, b.code) for b in blocks] == [
        ('README.md', 4, 'sh', 'echo zero\n'),
        ('docs/ex.md', 4, 'bash', 'echo one\n'),
        ('docs/ex.md', 14, 'python', "print('two')\n"),
    ]
    # the loose marker is a link-check problem, not a block; so is a command
    # block that is neither run nor says why not
    assert check_docs.check_links(str(tmp_path)) == [
        'docs/ex.md:18: <!-- runnable --> is not followed by a fenced block',
        'docs/ex.md:8: a bash block neither marked <!-- runnable --> nor '
        '<!-- not run by the docs check: <why> -->',
        'docs/ex.md:21: a shell block neither marked <!-- runnable --> nor '
        '<!-- not run by the docs check: <why> -->']


def test_every_command_block_is_run_or_says_why_not():
    text = ('<!-- not run by the docs check: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n'
            '```text\nplain output\n```\n'
            '1. a step\n\n   ```python\n   import mmdag\n   ```\n'
            '<!-- runnable -->\n```sh\necho\n```\n```sh\necho again\n```\n')
    assert check_docs.unmarked_blocks(text) == [(11, 'python'), (18, 'sh')]


def test_repository_docs_have_no_broken_links():
    assert check_docs.check_links(ROOT) == []


def test_repository_runnable_blocks_are_bash_or_python():
    blocks = check_docs.runnable_blocks(ROOT)
    assert blocks and all(b.lang in check_docs.RUNNERS for b in blocks)


def test_report_links_prints_each_broken_link_and_a_count(tmp_path, capsys):
    assert check_docs.report_links(str(_tree(tmp_path))) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith('README.md:6: broken link')
    assert out[-1] == 'links: 14 in 2 files, 3 broken'


def test_the_checker_imports_the_standard_library_only():
    path = osp.join(ROOT, 'mmdag', 'devtools', 'docs_check.py')
    tree = ast.parse(open(path).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split('.')[0] for m in names} <= set(sys.stdlib_module_names)


def test_the_tool_needs_neither_torch_nor_mmdag():
    # the tool loads its module without `import mmdag` (torch, seconds)
    res = subprocess.run(
        [sys.executable, '-c', 'import sys; sys.path.insert(0, "tools"); import check_docs; '
         'assert check_docs.docs_check.MARKER == "<!-- runnable -->"; '
         'print(sorted(m for m in ("torch", "mmdag", "mmengine") if m in sys.modules))'],
        cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == '[]', res.stderr


def test_the_tool_wants_links_or_run(capsys):
    spec = importlib.util.spec_from_file_location('check_docs',
                                                  osp.join(ROOT, 'tools', 'check_docs.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as e:
        tool.main([])
    assert e.value.code == 2 and 'say what to check' in capsys.readouterr().err


def test_run_block_runs_bash_and_python_in_the_directory(tmp_path):
    scripts = tmp_path / 'scripts'
    scripts.mkdir()
    ok, seconds, out = check_docs.run_block(
        check_docs.Block('docs/a.md', 3, 'bash', 'echo "$MMDAG_REPO"; pwd\n'), str(tmp_path),
        str(scripts), ROOT)
    assert ok and seconds > 0 and out.split() == [ROOT, str(tmp_path)]
    ok, _, out = check_docs.run_block(
        check_docs.Block('docs/a.md', 9, 'python', 'import sys\nsys.exit(3)\n'),
        str(tmp_path), str(scripts), ROOT)
    assert not ok and out.endswith('(exit 3)')
    assert sorted(p.name for p in scripts.iterdir()) == ['docs_a.md_3.sh', 'docs_a.md_9.py']
