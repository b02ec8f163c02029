"""MkDocs hook (mkdocs.yml ``hooks:``): the committed studies' figures are part of the site.

``make readme`` writes each study's figures into ``results/<study>/figures/`` and its tables into the study's page;
this puts those PNGs into the site at the same paths (``results/<study>/figures/*.png``), so a page shows them
without a copy under docs/. A page links them relative to the docs root (``../results/...`` from ``studies/``).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]


def on_files(files: Files, config) -> Files:
    for figure in sorted(ROOT.glob("results/*/figures/*.png")):
        files.append(
            File(
                figure.relative_to(ROOT).as_posix(),
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
