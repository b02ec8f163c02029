"""Fetch the LLM-Adapters training and test files once into data/llm-adapters, checksummed (`make data`).

Layout written (what the math / commonsense task configs read):
    data/llm-adapters/math_10k.json, commonsense_170k.json, test/<name>/test.json
Default source: the AGI-Edgerunners/LLM-Adapters GitHub repository, raw files at a pinned commit (``COMMIT``), each
download checked against the git object id that commit's tree gives it (``GIT_BLOBS``), so every user gets the same
bytes. Another version: --base-url https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/<commit> (then
only the manifest below checks it). Offline: --source DIR copies from a folder in the layout above (e.g. a
colleague's data/llm-adapters).

The first fetch of a file records its SHA-256 in data/llm-adapters.sha256; later runs verify every file against
it. A file that differs from its recorded checksum is an error and is never overwritten: delete it (and its
manifest line) to fetch it again.

    python scripts/prepare_data.py [--out data/llm-adapters] [--source DIR | --base-url URL] [--allow-missing]
"""

from __future__ import annotations

import argparse
import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm  # text bars also in notebooks (tqdm.auto warns there without ipywidgets)

from bora.errors import BoraError, run_tool
from bora.tasks.llm_adapters import TEST_FIELDS, TRAIN_FIELDS, read_records

COMMIT = "816657208af4db747803f87ba40a4c71383fed7a"  # LLM-Adapters' main on 2024-03-10 (its latest commit we know)
BASE_URL = f"https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/{COMMIT}"
# `git ls-tree -r COMMIT`: the object id of each file we fetch (SHA-1 of "blob <size>\0" + its bytes). The 13 test
# sets ../shared/data holds have exactly these ids (tests/tasks/test_real_data.py).
GIT_BLOBS = {
    "ft-training_set/math_10k.json": "27dba77d6ed80aa118d78fbafa5cecd651f6d463",
    "ft-training_set/commonsense_170k.json": "529e426b33d4cdb1d0c4a275a1a7245ad081fd91",
    "dataset/AddSub/test.json": "f3996cdf4159b4e1e4b6768865a4db72105f4e2f",
    "dataset/MultiArith/test.json": "08e996c6cd8c633cc977f5c50709a8bbfc8fadff",
    "dataset/SingleEq/test.json": "cce7a868400323e30e2094a15d482c1aa743dbb0",
    "dataset/gsm8k/test.json": "57a7a08e10e12e975e1f972d2b8125c0d4c722b1",
    "dataset/AQuA/test.json": "731fbb456f7a93bb4121125de09c4adcf42e5dab",
    "dataset/SVAMP/test.json": "98b8f1872db596f8aaff2c95d1d698a9fa13b94f",
    "dataset/boolq/test.json": "6d7edb0a8e8a6566b546ccf0d98d24e48db3fdf3",
    "dataset/piqa/test.json": "f7a1c260692ef31796d4763cb6334f316a754fed",
    "dataset/social_i_qa/test.json": "eadf221799ca394367b144c0f86ee0436db409d2",
    "dataset/hellaswag/test.json": "183c4920415f83ba4b793c4873a33e7e10bd1be5",
    "dataset/winogrande/test.json": "21257263593dd4d00546e1918c88ca0f357b08ad",
    "dataset/ARC-Challenge/test.json": "9540685439144200b5a7e48dab9ca4655be2af09",
    "dataset/ARC-Easy/test.json": "6c0d30aaedaeca148df6bcd7aaacf7c31e6ad70f",
    "dataset/openbookqa/test.json": "a6e69676104bcb77237388c3b5a3f0dcbb81d1e2",
}
TRAIN_FILES = ("math_10k.json", "commonsense_170k.json")
TEST_SETS = (
    "AddSub",
    "MultiArith",
    "SingleEq",
    "gsm8k",
    "AQuA",
    "SVAMP",  # Math10K tests (paper Table 2)
    "boolq",
    "piqa",
    "social_i_qa",
    "hellaswag",
    "winogrande",
    "ARC-Challenge",
    "ARC-Easy",
    "openbookqa",
)
CHUNK = 1 << 20


def file_plan() -> list[tuple[str, str, tuple[str, ...]]]:
    """(path under --out and --source, path in the LLM-Adapters repository, fields every record must have)."""
    plan = [(name, f"ft-training_set/{name}", TRAIN_FIELDS) for name in TRAIN_FILES]
    plan += [(f"test/{name}/test.json", f"dataset/{name}/test.json", TEST_FIELDS) for name in TEST_SETS]
    return plan


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """The id git gives the file's bytes: SHA-1 of ``blob <size>\\0`` and the bytes (``git hash-object``)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """``sha256sum`` format: one ``<hex digest>  <relative path>`` per line."""
    if not path.is_file():
        return {}
    manifest = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise BoraError(f"{path} line {number}: expected '<sha256>  <path>'")
        manifest[name] = digest
    return manifest


def write_manifest(path: Path, manifest: dict[str, str]) -> None:
    path.write_text("".join(f"{manifest[name]}  {name}\n" for name in sorted(manifest)), encoding="utf-8")


def fetch(url: str, dest: Path) -> None:
    """Stream ``url`` (http(s) or file://) into ``dest`` with a progress bar."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            size = response.headers.get("Content-Length")
            with tqdm(total=int(size) if size else None, unit="B", unit_scale=True, desc=dest.name) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        dest.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise BoraError(f"cannot fetch {url}: {reason}") from None


def prepare(
    out: Path, base_url: str = BASE_URL, source: Path | None = None, allow_missing: bool = False
) -> dict[str, list[str]]:
    """Fetch, verify and record every file of ``file_plan``: {"fetched": [...], "verified": [...], "skipped": [...]}."""
    manifest_path = out.parent / f"{out.name}.sha256"
    manifest = read_manifest(manifest_path)
    done: dict[str, list[str]] = {"fetched": [], "verified": [], "skipped": []}
    for rel, repo_path, fields in file_plan():
        target = out / rel
        if target.exists():
            digest = sha256(target)
            if rel in manifest and manifest[rel] != digest:
                raise BoraError(f"{target} differs from its checksum in {manifest_path}; delete it to fetch it again")
            if rel not in manifest:
                print(f"recording the checksum of existing {target}")
            manifest[rel] = digest
            write_manifest(manifest_path, manifest)
            done["verified"].append(rel)
            continue
        if source is not None:
            if not (source / rel).is_file():
                if allow_missing:
                    print(f"skipped {rel}: not in {source}")
                    done["skipped"].append(rel)
                    continue
                raise BoraError(f"{source / rel} not found; pass --allow-missing to skip files the source lacks")
            url = (source / rel).resolve().as_uri()
        else:
            url = f"{base_url.rstrip('/')}/{repo_path}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        fetch(url, partial)
        if source is None and base_url == BASE_URL and git_blob_id(partial) != GIT_BLOBS[repo_path]:
            partial.unlink()
            raise BoraError(
                f"{url} is not the file of the pinned commit {COMMIT[:12]} (git object "
                f"{GIT_BLOBS[repo_path][:12]}...): a proxy's page or a rewritten upstream? Nothing was written"
            )
        digest = sha256(partial)
        if rel in manifest and manifest[rel] != digest:
            partial.unlink()
            raise BoraError(
                f"{url} has changed since {manifest_path} recorded it (sha256 {digest[:12]}... instead "
                f"of {manifest[rel][:12]}...); pin the old version with --base-url or update the manifest"
            )
        try:
            read_records(partial, fields)  # an error page or a truncated file never lands under its real name
        except BoraError as error:
            partial.unlink()
            raise BoraError(f"{url} is not an LLM-Adapters file: {error}") from None
        partial.rename(target)
        manifest[rel] = digest
        write_manifest(manifest_path, manifest)  # after every file, so an interrupted run keeps what it verified
        done["fetched"].append(rel)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "llm-adapters")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--base-url", default=BASE_URL, help="raw-file root of the LLM-Adapters repository")
    group.add_argument("--source", type=Path, help="copy from a local folder in the data/llm-adapters layout")
    parser.add_argument("--allow-missing", action="store_true", help="with --source: skip files the folder lacks")
    args = parser.parse_args(argv)
    if args.source is not None and not args.source.is_dir():
        parser.error(f"--source {args.source}: no such directory")
    run_tool(lambda: _prepare(args))


def _prepare(args) -> None:
    done = prepare(args.out, args.base_url, args.source, args.allow_missing)
    print(
        f"{args.out}: {len(done['fetched'])} fetched, {len(done['verified'])} already there and verified, "
        f"{len(done['skipped'])} skipped; checksums in {args.out.name}.sha256"
    )


if __name__ == "__main__":
    main()
