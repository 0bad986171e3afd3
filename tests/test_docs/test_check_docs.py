"""tools/check_docs.py: the link checker and the runnable-block extractor
(fast: no model), and the repository's own README.md and docs/ links."""
import importlib.util
import os.path as osp

from conftest import ROOT


def _load():
    spec = importlib.util.spec_from_file_location('check_docs',
                                                  osp.join(ROOT, 'tools', 'check_docs.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check_docs = _load()

README = """# Project

![a picture](docs/images/pic.png)
See [the guide](docs/guide.md), [its options](docs/guide.md#the-options-flag),
[a section here](#project) and [the site](https://example.org/missing.md).
[Gone](docs/gone.md) and [no anchor](docs/guide.md#nothing-like-this).
`[in a code span](docs/nope.md)`

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
    assert len(problems) == 1 and problems[0].startswith('README.md:13:')


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
    # the loose marker is a link-check problem, not a block
    assert check_docs.check_links(str(tmp_path)) == [
        'docs/ex.md:18: <!-- runnable --> is not followed by a fenced block']


def test_repository_docs_have_no_broken_links():
    assert check_docs.check_links(ROOT) == []


def test_repository_runnable_blocks_are_bash_or_python():
    blocks = check_docs.runnable_blocks(ROOT)
    assert blocks and all(b.lang in check_docs.RUNNERS for b in blocks)
