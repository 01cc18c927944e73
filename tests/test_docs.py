"""The README and the manual in ``docs/`` cannot rot: the README fits on a screen, every relative link and anchor
resolves (by GitHub's heading rules in the README, by GitHub's and MkDocs' in the docs, which are read in both
places), every ``bench`` command they print parses, the figures they copy from the default grid are the
leaderboard's, and the site builds with ``mkdocs build --strict`` when MkDocs (the ``docs`` extra) is installed."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MAX_README_LINES = 300

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced code block as (info string, body)."""
    return re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)


def _heading_text(markdown: str) -> str:
    """A heading's text as rendered: code spans keep their content, links their text, emphasis marks go."""
    text = _CODE_SPAN.sub(lambda m: m.group(2), markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*\*|__|\*)", "", text).strip()


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading (github-slugger): lower case, every character but letters, digits, ``_``,
    ``-`` and spaces dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """MkDocs' anchor of a heading (Python-Markdown's ``toc`` slugify): accents folded to ASCII and the rest of
    non-ASCII dropped, every character but word characters, spaces and hyphens dropped, lower case, each run of
    spaces and hyphens one hyphen."""
    ascii_text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_text).strip().lower())


def anchors(path: Path, slug, duplicate_suffix: str) -> set[str]:
    """The anchors of a page's headings under one slug rule, repeated headings numbered as that renderer does."""
    found: set[str] = set()
    for line in _prose_lines(path.read_text()):
        match = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            base = anchor = slug(_heading_text(match.group(1)))
            count = 0
            while anchor in found:
                count += 1
                anchor = f"{base}{duplicate_suffix}{count}"
            found.add(anchor)
    return found


def _links(path: Path) -> list[str]:
    targets = []
    for line in _prose_lines(path.read_text()):
        line = _CODE_SPAN.sub(lambda m: "code", line)
        targets += _LINK.findall(line)
    return targets


def link_problems(path: Path, *, in_docs: bool) -> list[str]:
    """What is wrong with the relative links of one Markdown file: a missing file, a missing anchor, or (for a docs
    page) a target outside ``docs/``, which the built site would not have."""
    problems = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        resolved = (path.parent / name).resolve() if name else path
        where = f"{path.name}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no file {name}")
            continue
        if in_docs and not resolved.is_relative_to(DOCS.resolve()):
            problems.append(f"{where}: outside docs/ (name the file as code instead)")
            continue
        if anchor:
            if resolved.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
                continue
            rules = [(github_slug, "-")] + ([(mkdocs_slug, "_")] if in_docs else [])
            for slug, suffix in rules:
                if anchor not in anchors(resolved, slug, suffix):
                    problems.append(f"{where}: no heading with the anchor #{anchor} ({slug.__name__})")
    return problems


def test_the_readme_fits_on_a_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_slug_rules_give_the_anchors_github_and_mkdocs_give():
    # hand-computed: GitHub keeps one hyphen per space and non-ASCII letters, MkDocs folds runs and drops them
    heading = _heading_text("Structured track: channels, physical removal and measured speed-ups")
    assert github_slug(heading) == "structured-track-channels-physical-removal-and-measured-speed-ups"
    assert mkdocs_slug(heading) == "structured-track-channels-physical-removal-and-measured-speed-ups"
    assert github_slug(_heading_text("CIFAR, ImageNet and `FFCV`")) == "cifar-imagenet-and-ffcv"
    assert github_slug("Criterion × schedule") == "criterion--schedule"
    assert mkdocs_slug("Criterion × schedule") == "criterion-schedule"
    assert github_slug("Erdős–Rényi") == "erdősrényi"
    assert mkdocs_slug("Erdős–Rényi") == "erdosrenyi"


@pytest.mark.skipif(
    importlib.util.find_spec("markdown") is None, reason="Python-Markdown (with MkDocs) not installed"
)
def test_the_mkdocs_slug_is_python_markdowns():
    from markdown.extensions.toc import slugify

    for page in PAGES:
        for line in _prose_lines(page.read_text()):
            if line.startswith("#"):
                heading = _heading_text(line.lstrip("#"))
                assert mkdocs_slug(heading) == slugify(heading, "-"), heading


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section: with punctuation\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](other.md#a-section-with-punctuation) [gone](missing.md) [no anchor](other.md#nowhere)\n"
        "[own](#title) `[in code](missing.md)`\n\n# Title\n\n```\n[in a block](missing.md)\n```\n"
    )
    problems = link_problems(page, in_docs=False)
    assert len(problems) == 2
    assert "no file missing.md" in problems[0] and "#nowhere" in problems[1]


def test_every_relative_link_and_anchor_of_the_readme_resolves():
    assert link_problems(README, in_docs=False) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_of_the_docs_resolves(page):
    assert link_problems(page, in_docs=True) == []


def test_every_docs_page_is_in_the_site_navigation_and_linked_from_the_readme():
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    assert nav == {page.name for page in PAGES}
    from_readme = {Path(t.partition("#")[0]).name for t in _links(README) if t.startswith("docs/")}
    assert {page.name for page in PAGES} - {"index.md"} <= from_readme


def _bench_commands(path: Path) -> list[str]:
    """Every ``bench`` command line of a file's shell code blocks, continuation lines joined, placeholders
    (``[--option]``, ``...``, ``A|B``) left out."""
    commands = []
    for info, body in _code_blocks(path.read_text()):
        if info.strip() not in ("", "bash", "sh", "console"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "bench":
                    if not any(w.startswith("[") or "..." in w or "|" in w for w in words):
                        commands.append(shlex.join(words[1:]))
    return commands


def test_every_printed_bench_command_parses():
    from prunebench.cli import build_parser

    commands = [(path.name, c) for path in [README, *PAGES] for c in _bench_commands(path)]
    assert len(commands) >= 20  # the Quick start, the examples of the CLI, data, cluster and structured pages
    for where, command in commands:
        try:
            build_parser().parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"{where}: `bench {command}` does not parse")


def test_the_default_grid_figures_are_the_leaderboards():
    """Every scope-table row the README shows is a row of the committed leaderboard (the default-grid page quotes
    none: it points to the example)."""
    leaderboard = set((ROOT / "examples" / "default-grid" / "leaderboard.md").read_text().splitlines())
    for path in (README,):
        rows = [
            line
            for line in path.read_text().splitlines()
            if re.match(r"^\| [a-z_]+ \| [^|]* − [^|]* \|", line)
        ]
        assert rows, path.name
        assert [row for row in rows if row not in leaderboard] == [], path.name


def test_the_documented_experiment_file_is_the_example_one():
    """The TOML shown in the CLI page is ``examples/experiment.toml`` (which the tests run), less its header."""
    shown = next(body for info, body in _code_blocks((DOCS / "cli.md").read_text()) if info.strip() == "toml")
    example = (ROOT / "examples" / "experiment.toml").read_text()
    body = "\n".join(line for line in example.splitlines() if line and not line.startswith("#")) + "\n"
    assert shown.replace("\n\n", "\n") == body


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="MkDocs not installed (the `docs` extra)"
)
def test_the_site_builds_in_strict_mode(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
