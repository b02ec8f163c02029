"""scripts/prepare_data.py: the LLM-Adapters layout, checksums recorded then verified, nothing overwritten."""

import io
import json
import urllib.request

import pytest

from bora.config import load_config
from bora.errors import BoraError

RECORD = {"instruction": "q", "input": "", "output": "a", "answer": "1"}


@pytest.fixture
def repo(tmp_path, prepare_data):
    """A stand-in for the LLM-Adapters repository tree (raw files under a file:// URL)."""
    root = tmp_path / "LLM-Adapters"
    for _, repo_path, _ in prepare_data.file_plan():
        (root / repo_path).parent.mkdir(parents=True, exist_ok=True)
        (root / repo_path).write_text(json.dumps([RECORD, {**RECORD, "answer": repo_path}]), encoding="utf-8")
    return root


def manifest_of(out):
    return dict(line.split("  ")[::-1] for line in (out.parent / "llm-adapters.sha256").read_text().splitlines())


def test_fetches_layout_then_verifies(tmp_path, repo, prepare_data):
    out = tmp_path / "data" / "llm-adapters"
    done = prepare_data.prepare(out, base_url=repo.as_uri())
    assert len(done["fetched"]) == 16 and not done["verified"]
    assert (out / "math_10k.json").read_bytes() == (repo / "ft-training_set" / "math_10k.json").read_bytes()
    assert (out / "test" / "ARC-Challenge" / "test.json").read_bytes() == (
        repo / "dataset" / "ARC-Challenge" / "test.json"
    ).read_bytes()
    manifest = manifest_of(out)
    assert len(manifest) == 16 and manifest["commonsense_170k.json"] == prepare_data.sha256(
        out / "commonsense_170k.json"
    )
    assert not list(out.rglob("*.part"))
    again = prepare_data.prepare(out, base_url=repo.as_uri())
    assert not again["fetched"] and len(again["verified"]) == 16


def test_default_source_is_the_github_raw_files(tmp_path, repo, monkeypatch, prepare_data):
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        path = repo / url.removeprefix(prepare_data.BASE_URL + "/")
        response = io.BytesIO(path.read_bytes())
        response.headers = {"Content-Length": str(path.stat().st_size)}
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    # the stand-in files are not the pinned commit's: each would be refused, so pin the stand-ins' own ids here
    blobs = {path: prepare_data.git_blob_id(repo / path) for path in prepare_data.GIT_BLOBS}
    monkeypatch.setattr(prepare_data, "GIT_BLOBS", blobs)
    prepare_data.prepare(tmp_path / "llm-adapters")
    base = f"https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/{prepare_data.COMMIT}/"
    assert base + "ft-training_set/math_10k.json" in urls and base + "dataset/hellaswag/test.json" in urls
    assert len(urls) == 16 and len(prepare_data.COMMIT) == 40


def test_a_download_that_is_not_the_pinned_commits_file_never_lands(tmp_path, repo, monkeypatch, prepare_data):
    def urlopen(url, timeout):
        path = repo / url.removeprefix(prepare_data.BASE_URL + "/")
        response = io.BytesIO(path.read_bytes())  # valid LLM-Adapters JSON, but other bytes than the commit's
        response.headers = {"Content-Length": str(path.stat().st_size)}
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    out = tmp_path / "llm-adapters"
    with pytest.raises(BoraError, match="is not the file of the pinned commit 816657208af4"):
        prepare_data.prepare(out)
    assert not [p for p in out.rglob("*") if p.is_file()]  # no file, no .part, and no manifest line


def test_git_blob_id_is_gits_object_id(tmp_path, prepare_data):
    import hashlib
    import shutil
    import subprocess

    path = tmp_path / "f.json"
    content = b'[{"answer": "1"}]\n'
    path.write_bytes(content)
    assert prepare_data.git_blob_id(path) == hashlib.sha1(b"blob %d\0%s" % (len(content), content)).hexdigest()
    if shutil.which("git"):
        assert (
            prepare_data.git_blob_id(path)
            == subprocess.check_output(["git", "hash-object", str(path)], text=True).strip()
        )


def test_changed_local_file_is_never_overwritten(tmp_path, repo, prepare_data):
    out = tmp_path / "llm-adapters"
    prepare_data.prepare(out, base_url=repo.as_uri())
    (out / "test" / "gsm8k" / "test.json").write_text("[]", encoding="utf-8")
    with pytest.raises(BoraError, match=r"gsm8k/test\.json differs from its checksum .*delete it to fetch it again"):
        prepare_data.prepare(out, base_url=repo.as_uri())
    assert (out / "test" / "gsm8k" / "test.json").read_text() == "[]"


def test_changed_upstream_file_is_refused(tmp_path, repo, prepare_data):
    out = tmp_path / "llm-adapters"
    prepare_data.prepare(out, base_url=repo.as_uri())
    (out / "math_10k.json").unlink()
    (repo / "ft-training_set" / "math_10k.json").write_text(json.dumps([RECORD]), encoding="utf-8")
    with pytest.raises(BoraError, match=r"math_10k\.json has changed since .*llm-adapters\.sha256 recorded it"):
        prepare_data.prepare(out, base_url=repo.as_uri())
    assert not (out / "math_10k.json").exists() and not list(out.rglob("*.part"))


@pytest.mark.parametrize(
    "content, message",
    [("<html>404: Not Found</html>", "invalid JSON"), (json.dumps([{"instruction": "q"}]), "has no 'input' field")],
)
def test_a_broken_download_never_lands(tmp_path, repo, content, message, prepare_data):
    (repo / "ft-training_set" / "commonsense_170k.json").write_text(content, encoding="utf-8")
    out = tmp_path / "llm-adapters"
    with pytest.raises(BoraError, match=rf"commonsense_170k\.json is not an LLM-Adapters file: .*{message}"):
        prepare_data.prepare(out, base_url=repo.as_uri())
    assert not (out / "commonsense_170k.json").exists() and not list(out.rglob("*.part"))


def test_unreachable_file_is_an_error(tmp_path, repo, prepare_data):
    (repo / "dataset" / "piqa" / "test.json").unlink()
    with pytest.raises(BoraError, match=r"cannot fetch file://.*dataset/piqa/test\.json"):
        prepare_data.prepare(tmp_path / "llm-adapters", base_url=repo.as_uri())


def test_copy_from_a_local_folder(tmp_path, repo, capsys, prepare_data):
    source = tmp_path / "copy"
    prepare_data.prepare(source, base_url=repo.as_uri())
    (source / "math_10k.json").unlink()
    out = tmp_path / "project" / "llm-adapters"
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(["--out", str(out), "--source", str(source)])
    assert exit_info.value.code == 2
    assert "math_10k.json not found; pass --allow-missing" in capsys.readouterr().err
    prepare_data.main(["--out", str(out), "--source", str(source), "--allow-missing"])
    assert "15 fetched, 0 already there and verified, 1 skipped" in capsys.readouterr().out
    assert not (out / "math_10k.json").exists() and (out / "test" / "openbookqa" / "test.json").is_file()
    assert "math_10k.json" not in manifest_of(out) and len(manifest_of(out)) == 15


def test_file_list_matches_the_task_configs(prepare_data):
    math, commonsense = (load_config([f"task={name}"]).task for name in ("math", "commonsense"))
    assert prepare_data.TEST_SETS == (*math.test_sets, *commonsense.test_sets)
    assert prepare_data.TRAIN_FILES == (math.train_file, commonsense.train_file)
