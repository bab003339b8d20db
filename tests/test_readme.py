"""The shell and Python examples of the README and the docs site, run as printed, in order, in a fresh folder
(`pytest -m docs`), and the site built strictly.

Each ```bash / ```python block of README.md, then of every page of docs/ in the order of mkdocs.yml's nav,
runs in one temporary folder shared by all blocks (later examples use what earlier ones wrote, as a reader
following the README's tour and then the pages would), with the repository's `configs/` beside it as in a
fresh clone. A block must exit 0, and every `prints "TEXT"` in its comments
must appear in its output. A block whose comment says `not run by tests/test_readme.py: REASON` is
skipped, and the skip names the line and the reason (installing into the current environment, minutes
of demo training). `.ci/run` runs these; the default `pytest` run only checks that the pages parse, that
every page is in the nav, that local links resolve, and that the README stays short.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 250  # what it is, set-up, the tour, the command table, links; the rest lives in docs/
# The marker may stand anywhere in a comment, also in parentheses: "# ... (not run by tests/test_readme.py: WHY)".
SKIP = re.compile(r"#.*?not run by tests/test_readme\.py:\s*(.*\S)")
PRINTS = re.compile(r'prints "([^"]+)"')
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
BLOCK_TIMEOUT_S = 1200  # the slowest block (train + kill + resume) takes a few minutes on a busy 2-core VM


@dataclass(frozen=True)
class Block:
    """One fenced example of the README."""

    file: str  # README.md or docs/PAGE.md
    line: int  # 1-based line of the opening fence
    section: str  # the heading above it
    lang: str  # bash or python
    code: str
    skip: str | None  # the marker's reason, if the block is not run
    expects: tuple[str, ...]  # texts the block's output must contain

    @property
    def name(self) -> str:
        """Test id: section, language and line."""
        words = re.findall(r"[a-z0-9]+", self.section.lower())[:3]
        page = "" if self.file == "README.md" else Path(self.file).stem + ":"
        return f"{page}{'-'.join(words) or 'top'}-{self.lang}-line{self.line}"

    @property
    def where(self) -> str:
        """File and line, for messages."""
        return f"{self.file} line {self.line}"


def _reason(text: str) -> str:
    """The marker's reason, without the parenthesis that closes a marker written in parentheses."""
    return text[:-1].rstrip() if text.endswith(")") and text.count(")") > text.count("(") else text


def readme_blocks(text: str, file: str = "README.md") -> list[Block]:
    """The ```bash and ```python blocks of a Markdown text, de-indented (blocks inside list items)."""
    blocks, lines, i, section = [], text.splitlines(), 0, ""
    while i < len(lines):
        if re.match(r"#{1,2} ", lines[i]):
            section = lines[i].split(" ", 1)[1]
        start = FENCE.match(lines[i])
        if not start or not start.group(2):
            i += 1
            continue
        indent, lang, body = len(start.group(1)), start.group(2), []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # the closing fence
        if lang in ("bash", "python"):
            code = "\n".join(body) + "\n"
            skip = SKIP.search(code)
            blocks.append(Block(file, i - len(body) - 1, section, lang, code,
                                _reason(skip.group(1)) if skip else None, tuple(PRINTS.findall(code))))
    return blocks


def nav_pages(mkdocs_yml: Path = REPO / "mkdocs.yml") -> list[str]:
    """The docs pages in the order of the site's nav (nested sections flattened)."""
    def walk(items: list) -> list[str]:
        pages = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            pages += walk(value) if isinstance(value, list) else [value]
        return pages

    return walk(yaml.safe_load(mkdocs_yml.read_text(encoding="utf-8"))["nav"])


def all_blocks() -> list[Block]:
    """The README's blocks, then each page's in nav order: the order a reader runs them in."""
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    for page in nav_pages():
        blocks += readme_blocks((DOCS / page).read_text(encoding="utf-8"), f"docs/{page}")
    return blocks


BLOCKS = all_blocks()


def test_readme_examples_parse():
    """Every example is either run (and says what it prints somewhere) or skipped with a reason."""
    assert len(BLOCKS) >= 8
    runnable = [b for b in BLOCKS if b.skip is None]
    assert len(runnable) >= 6 and sum(len(b.expects) for b in runnable) >= 5
    for block in BLOCKS:
        assert block.skip is None or len(block.skip) > 10, f"{block.where}: give a reason for the skip"
    tour = [b for b in runnable if b.file == "README.md"]
    assert tour and any("deco sample" in b.code for b in tour), "the README's tour starts from the sample"


def test_readme_stays_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to a page under docs/"


def test_every_docs_page_is_in_the_nav_once():
    pages = nav_pages()
    assert len(pages) == len(set(pages)), "a page is listed twice in mkdocs.yml's nav"
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk, "mkdocs.yml's nav and the pages under docs/ differ"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", ["README.md"] + [f"docs/{p}" for p in nav_pages()])
def test_local_links_resolve(page: str) -> None:
    """A relative link (a page, an image, a file of the repository) names something that exists."""
    path = REPO / page
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{page}: link to {target}, which does not exist"


@pytest.mark.docs
def test_docs_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, an anchor that is not there or a page outside the nav fails."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # mkdocs-material's banner, not a warning
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "demo" / "index.html").is_file()


def test_parser_reads_markers_and_indented_blocks():
    text = ("x\n```bash\ndeco sample s   # prints \"wrote 8\"\n```\n- item\n\n  ```python\n  print(1)\n  ```\n"
            "```bash\n# not run by tests/test_readme.py: installs packages\npip install x\n```\n```\nlayout\n```\n"
            "```bash\nserve   # then open it (not run by tests/test_readme.py: serves until Ctrl-C)\n```\n")
    blocks = readme_blocks(text)
    assert [b.name for b in blocks] == ["top-bash-line2", "top-python-line7", "top-bash-line10", "top-bash-line17"]
    assert blocks[3].skip == "serves until Ctrl-C"
    blocks = blocks[:3]
    assert [(b.lang, b.line, b.expects, b.skip) for b in blocks] == [
        ("bash", 2, ("wrote 8",), None), ("python", 7, (), None), ("bash", 10, (), "installs packages")]
    assert blocks[1].code == "print(1)\n"


class Workspace:
    """The shared folder, running blocks in reading order (a block selected alone first runs those before it)."""

    def __init__(self, root: Path, blocks: list[Block]) -> None:
        self.root, self.blocks = root, blocks
        root.mkdir(parents=True, exist_ok=True)
        (root / "configs").symlink_to(REPO / "configs", target_is_directory=True)
        self.done: dict[int, str] = {}
        bin_dir = str(Path(sys.executable).parent)  # the `deco` console script and `python` of this venv
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                    "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        for name in ("DECO_THREADS", "OMP_NUM_THREADS"):  # the README's defaults, not the test runner's
            self.env.pop(name, None)

    def run_through(self, index: int) -> str:
        """Run every runnable block up to `index` not yet run; return block `index`'s output."""
        for i, block in enumerate(self.blocks[: index + 1]):
            if block.skip is None and i not in self.done:
                self.done[i] = self._run(block)
        return self.done[index]

    def _run(self, block: Block) -> str:
        if block.lang == "bash":
            cmd, stdin = ["bash", "-c", "set -euo pipefail\n" + block.code], None
        else:
            cmd, stdin = [sys.executable, "-"], block.code
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{block.code}\n{output[-4000:]}"
        flat = " ".join(output.split())  # rich wraps long lines; compare with whitespace collapsed
        for text in block.expects:
            assert " ".join(text.split()) in flat, f"{block.where}: expected {text!r} in:\n{output[-4000:]}"
        return output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("readme"), BLOCKS)


@pytest.mark.docs
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.name for b in BLOCKS])
def test_readme_example_runs_as_printed(workspace: Workspace, index: int) -> None:
    block = BLOCKS[index]
    if block.skip is not None:
        pytest.skip(f"{block.where}: {block.skip}")
    workspace.run_through(index)


@pytest.mark.docs
def test_examples_write_only_into_ignored_paths(workspace: Workspace) -> None:
    """A reader following the tour and the pages in a clone leaves `git status` clean: every top-level path the
    examples wrote is ignored by .gitignore (runs after the examples above, in this file's order)."""
    written = sorted(p.name for p in workspace.root.iterdir() if p.name != "configs")
    assert written, "no example ran"
    for name in written:
        is_dir = (workspace.root / name).is_dir()
        probe = subprocess.run(["git", "check-ignore", "-q", name + ("/" if is_dir else "")], cwd=REPO)
        assert probe.returncode == 0, f"the examples write {name}{'/' if is_dir else ''}, which .gitignore does not cover"


def test_blocks_fail_on_wrong_output_or_exit_status(tmp_path):
    ok = readme_blocks('```bash\nX=shared; echo "hello   $X"  # prints "hello shared"\n```\n'
                       '```python\nimport os; print(sorted(os.listdir(".")))  # prints "configs"\n```\n')
    workspace = Workspace(tmp_path / "ok", ok)
    assert "hello   shared" in workspace.run_through(0)  # matched with whitespace collapsed
    assert "configs" in workspace.run_through(1)
    wrong = readme_blocks('```bash\necho hello  # prints "goodbye"\n```\n')
    with pytest.raises(AssertionError, match="expected 'goodbye'"):
        Workspace(tmp_path / "wrong", wrong).run_through(0)
    failing = readme_blocks("```bash\nfalse; echo after\n```\n")
    with pytest.raises(AssertionError, match="exited 1"):
        Workspace(tmp_path / "failing", failing).run_through(0)
