"""The documentation site (mkdocs.yml, docs/) builds with ``mkdocs build --strict``: a broken link or anchor, a page
left out of the nav or a missing snippet fails here. The README's own links (GitHub's front door, outside the site)
point at files and headings that exist, and the result-file page names every field of the record."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(path.relative_to(DOCS) for path in DOCS.rglob("*.md"))


def mkdocs() -> list[str]:
    """The mkdocs command: this environment's (the lock has it, so CI always builds), else one on PATH (a separate
    docs environment); without either the tests skip, naming the module."""
    if importlib.util.find_spec("mkdocs") is not None:
        return [sys.executable, "-m", "mkdocs"]
    found = shutil.which("mkdocs")
    if found is None:
        pytest.importorskip("mkdocs")
    return [found]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*mkdocs(), "build", "--strict", "--config-file", str(root / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def html(site: Path, page: Path) -> str:
    """The built HTML of docs page ``page`` (directory URLs: ``a/b.md`` -> ``a/b/index.html``)."""
    stem = page.with_suffix("")
    folder = stem.parent if stem.name == "index" else stem
    return (site / folder / "index.html").read_text(encoding="utf-8")


def test_every_page_is_built_with_its_snippets_and_figures(site):
    assert len(PAGES) >= 14
    for page in PAGES:
        text = html(site, page)
        assert "--8&lt;--" not in text and "--8<--" not in text, f"{page}: a snippet was not included"
    assert "BoRA r=8 b=16</td>" in html(site, Path("speed-and-memory.md"))  # the README's GPU table, included
    assert "the test suite (<code>make test</code>)" in html(site, Path("index.md"))  # the README's layout
    assert "def lora_factors" in re.sub(
        r"<[^>]+>", "", html(site, Path("add-a-method.md"))
    )  # src/bora/adapters/lora.py
    for figure in ROOT.glob("results/*/figures/*.png"):
        assert (site / figure.relative_to(ROOT)).read_bytes() == figure.read_bytes()
    for study in ("cpu-ablations", "cpu-commonsense"):
        sources = re.findall(r'<img[^>]* src="([^"]+)"', html(site, Path("studies") / f"{study}.md"))
        assert sources and all((site / "studies" / study / source).resolve().is_file() for source in sources)


def _copy_for_build(tmp_path: Path) -> Path:
    """What the site is built from, copied: mkdocs.yml, docs/, the files its pages include (``--8<-- "path..."``) and
    the committed figures."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    included = {m for page in DOCS.rglob("*.md") for m in re.findall(r'--8<-- "([^":]+)', page.read_text())}
    assert included, "no page includes a snippet any more: drop this part of the copy"
    for file in [ROOT / "mkdocs.yml", *(ROOT / name for name in included), *ROOT.glob("results/*/figures/*.png")]:
        target = copy / file.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    return copy


@pytest.mark.parametrize(
    "breakage, named",
    [
        ("link", "no-such-page.md"),
        ("anchor", "#no-such-heading"),
        ("orphan", "orphan.md"),
    ],
)
def test_the_strict_build_fails_on_a_broken_link_anchor_or_a_page_outside_the_nav(tmp_path, breakage, named):
    copy = _copy_for_build(tmp_path)
    page = copy / "docs" / "methods.md"
    if breakage == "link":
        page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    elif breakage == "anchor":
        page.write_text(page.read_text() + "\nSee [nowhere](results.md#no-such-heading).\n")
    else:
        (copy / "docs" / "orphan.md").write_text("# A page no nav entry names\n")
    done = build(copy, tmp_path / "site")
    assert done.returncode != 0 and named in done.stdout + done.stderr, done.stderr[-2000:]


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readmes_links_point_at_files_and_headings_that_exist(site):
    """README.md is not part of the site (GitHub shows it): its relative links are checked here, anchors against
    the ids of the built pages."""
    links = [link for link in LINK.findall((ROOT / "README.md").read_text()) if not re.match(r"[a-z]+:", link)]
    assert sum(link.startswith("docs/") for link in links) >= 10
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            assert f'id="{anchor}"' in html(site, Path(path).relative_to("docs")), link


def test_the_result_file_page_names_every_field_of_the_record():
    from bora.record import RunRecord, TrainStats

    text = (DOCS / "results.md").read_text()
    missing = [name for name in [*RunRecord.model_fields, *TrainStats.model_fields] if f"`{name}`" not in text]
    assert not missing, f"docs/results.md does not name {missing}"
