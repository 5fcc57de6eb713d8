"""The docs stay true to the tree: links resolve (a `#section` of a Markdown page too), the
README's folder map lists exactly the repository's top-level folders, and each docs page
opens with the question it answers."""

import functools
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOC_FILES = [README, *sorted(DOCS.glob("**/*.md"))]
DOC_PAGES = DOC_FILES[1:]

# `[text](target)`, the target without spaces: the pattern CI's link check reads.
LINK = re.compile(r"\]\(([^)\s]+)\)")
# A link with a scheme (https:, mailto:, ...) points outside the repository.
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
# The README's folder map: the table under this heading, one row per top-level folder,
# its first cell the folder's name in backquotes with a trailing slash: | `models/` | ... |
FOLDER_MAP_HEADING = "## Folder map"
FOLDER_MAP_HEADER = "| folder | what it holds |"
FOLDER_ROW = re.compile(r"\| `(?P<name>[^`/]+)/` \| \S.*\|")
SEPARATOR_ROW = re.compile(r"\|(\s*:?-+:?\s*\|)+")
QUESTION = "This page answers: "
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def relative_links(text: str) -> list[str]:
    """Every link target that points into the repository (no scheme, not a pure #anchor)."""
    return [
        target
        for target in LINK.findall(text)
        if not SCHEME.match(target) and not target.startswith("#")
    ]


def heading_anchors(markdown: str) -> set[str]:
    """The `#anchor` of each heading as GitHub makes it: lower case, punctuation but `-` and
    `_` dropped, spaces as `-` (fenced code left out: a `# comment` there is no heading)."""
    headings = HEADING.findall(FENCE.sub("", markdown))
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings
    }


@functools.cache
def page_anchors(page: Path) -> frozenset[str]:
    """The heading anchors of a page, read once however many links name it."""
    return frozenset(heading_anchors(page.read_text()))


def folder_map(readme: str) -> list[str]:
    """The folder names of the README's folder map, in order; fails on a row of another form."""
    lines = readme.splitlines()
    assert FOLDER_MAP_HEADING in lines, f"README.md has no {FOLDER_MAP_HEADING!r} section"
    section: list[str] = []
    for line in lines[lines.index(FOLDER_MAP_HEADING) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            section.append(line.strip())
    assert section[:1] == [FOLDER_MAP_HEADER], f"the folder map starts with {FOLDER_MAP_HEADER}"
    assert len(section) > 1 and SEPARATOR_ROW.fullmatch(section[1]), "no table separator row"
    names = []
    for row in section[2:]:
        match = FOLDER_ROW.fullmatch(row)
        assert match, f"folder map row not of the form | `name/` | what it holds |: {row}"
        names.append(match["name"])
    return names


def tracked_top_level_folders() -> set[str]:
    """Top-level folders holding a file git tracks, dot-folders (.ci, ...) left out."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return {
        path.split("/", 1)[0]
        for path in listed.split("\0")
        if "/" in path and not path.startswith(".")
    }


@pytest.mark.parametrize("doc", DOC_FILES, ids=_name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = [
        target
        for target in relative_links(doc.read_text())
        if not (doc.parent / target.split("#", 1)[0]).resolve().exists()
    ]
    assert broken == [], f"{_name(doc)}: broken links {broken}"


@pytest.mark.parametrize("doc", DOC_FILES, ids=_name)
def test_every_section_link_names_a_heading_of_its_page(doc: Path) -> None:
    text = FENCE.sub("", doc.read_text())
    broken = []
    for target in LINK.findall(text):
        path, _, anchor = target.partition("#")
        page = (doc.parent / path).resolve() if path else doc
        if SCHEME.match(target) or not anchor or page.suffix != ".md" or not page.exists():
            continue
        if anchor not in page_anchors(page):
            broken.append(target)
    assert broken == [], f"{_name(doc)}: links to no heading {broken}"


def test_heading_anchors_are_githubs() -> None:
    text = (
        "# Performance\n## What limits the sustained rate\n### `Step`, and more\n```\n# no\n```\n"
    )
    assert heading_anchors(text) == {
        "performance",
        "what-limits-the-sustained-rate",
        "step-and-more",
    }


def test_the_link_pattern_reads_what_a_reader_follows() -> None:
    text = "[a](docs/a.md) [b](../b.py#L3) [c](https://temporal.io) [d](#flow) `x[0](y z)`"
    assert relative_links(text) == ["docs/a.md", "../b.py#L3"]


def test_the_folder_map_lists_every_tracked_top_level_folder_and_nothing_else() -> None:
    listed = folder_map(README.read_text())
    assert len(listed) == len(set(listed)), f"a folder is listed twice: {listed}"
    tracked = tracked_top_level_folders()
    assert set(listed) == tracked, (
        f"missing from the folder map: {sorted(tracked - set(listed))}; "
        f"listed but not in the tree: {sorted(set(listed) - tracked)}"
    )


def test_the_folder_map_parser_refuses_a_row_of_another_form() -> None:
    readme = f"{FOLDER_MAP_HEADING}\n\n{FOLDER_MAP_HEADER}\n|---|---|\n| models | models |\n"
    with pytest.raises(AssertionError, match="folder map row"):
        folder_map(readme)


@pytest.mark.parametrize("page", DOC_PAGES, ids=_name)
def test_each_docs_page_opens_with_its_heading_and_question(page: Path) -> None:
    lines = [line for line in page.read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{_name(page)}: the first line is not a '# ' heading"
    assert lines[1].startswith(QUESTION), f"{_name(page)}: no {QUESTION!r} after the heading"


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.split("#", 1)[0]).resolve() for target in relative_links(README.read_text())
    }
    assert DOC_PAGES, "docs/ holds no page"
    unlinked = [_name(page) for page in DOC_PAGES if page.resolve() not in linked]
    assert unlinked == [], f"README.md does not link {unlinked}"


# "[`path.py`](...), whole ...:" then the file in a python block.
WHOLE = re.compile(
    r"\[`([^`]+\.py)`\]\([^)]+\), whole(?:[^\n]*\n)?[^\n]*:\n\n```python\n(.*?)```",
    re.S,
)


def test_a_file_shown_whole_in_the_docs_is_the_file() -> None:
    """docs/saga.md shows the trip's saga and its worker whole, for a team to copy."""
    shown = WHOLE.findall((ROOT / "docs" / "saga.md").read_text())
    assert {path for path, _ in shown} >= {"examples/trip/workflow.py", "examples/trip/worker.py"}
    for path, text in shown:
        assert text == (ROOT / path).read_text(), f"docs/saga.md shows an old {path}"


# A fenced block of docs/saga.md: its language and its text.
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_saga_shapes_in_the_docs_are_the_commands_output() -> None:
    """docs/saga.md shows the trip's and the checkout's shape as `checkout-saga describe`
    prints them (temporal_saga.shape): each block that names a saga as it starts is its
    output today."""
    from examples.trip.workflow import TripBookingWorkflow
    from temporal_saga.shape import describe, mermaid
    from workflows.checkout import CheckoutWorkflow

    blocks = BLOCK.findall((DOCS / "saga.md").read_text())
    for saga in (TripBookingWorkflow, CheckoutWorkflow):
        name = mermaid(saga).splitlines()[1].strip()  # its start node: start(["TYPE"])
        shown = [text for language, text in blocks if language == "mermaid" and name in text]
        assert shown == [mermaid(saga)], f"docs/saga.md: the {saga.__name__} diagram is stale"
    head = describe(TripBookingWorkflow).splitlines()[0]
    shown = [text for language, text in blocks if language == "text" and text.startswith(head)]
    assert shown == [describe(TripBookingWorkflow)], "docs/saga.md: the trip as text is stale"
