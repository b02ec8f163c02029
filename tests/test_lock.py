"""The dependency lock: it satisfies pyproject.toml, and bora.lockfile names every way an environment differs."""

import hashlib

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bora import lockfile
from bora.paths import PROJECT_ROOT


def test_the_lock_satisfies_every_requirement_of_pyproject():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pins = lockfile.read_pins(PROJECT_ROOT / lockfile.LOCK) | lockfile.read_pins(PROJECT_ROOT / lockfile.TORCH_LOCK)
    requirements = [Requirement(line) for line in project["dependencies"]]
    requirements += [Requirement(line) for extra in project["optional-dependencies"].values() for line in extra]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in the lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {requirement}"
    names = [
        line.split("==")[0]
        for path in (lockfile.LOCK, lockfile.TORCH_LOCK)
        for line in (PROJECT_ROOT / path).read_text().splitlines()
        if "==" in line and line[0].isalpha()
    ]
    assert len(names) == len(set(names)) == len(pins)  # each package pinned once, and every pin read


def test_torch_is_locked_apart_and_every_pin_is_hashed():
    for path in (lockfile.LOCK, lockfile.TORCH_LOCK):
        text = (PROJECT_ROOT / path).read_text()
        entries = [line for line in text.splitlines() if "==" in line and not line.startswith((" ", "#"))]
        assert entries and all(line.endswith("\\") for line in entries), path  # each pin continues with its hashes
        assert text.count("--hash=sha256:") >= len(entries)
    assert "torch" not in lockfile.read_pins(PROJECT_ROOT / lockfile.LOCK)
    assert list(lockfile.read_pins(PROJECT_ROOT / lockfile.TORCH_LOCK)) == ["torch"]


LOCKED = {"peft": "0.22.0", "numpy": "2.4.6"}
TORCH = {"torch": "2.13.0+cpu"}


@pytest.mark.parametrize(
    "installed, differences, extra",
    [
        ({**LOCKED, "torch": "2.13.0+cpu", "bora": "0.1.0"}, [], []),
        ({**LOCKED, "torch": "2.13.0+cu126"}, [], []),  # a CUDA build of the locked release
        ({**LOCKED, "peft": "0.21.2", "torch": "2.13.0+cpu"}, ["peft: locked 0.22.0, installed 0.21.2"], []),
        ({"numpy": "2.4.6", "torch": "2.13.0+cpu"}, ["peft: locked 0.22.0, not installed"], []),
        ({**LOCKED, "torch": "2.14.1"}, ["torch: locked 2.13.0+cpu, installed 2.14.1"], []),
        ({**LOCKED, "torch": "2.13.0+cpu", "six": "1.16.0"}, [], ["six==1.16.0"]),
    ],
)
def test_compare_names_each_package_that_is_not_the_lock(installed, differences, extra, monkeypatch):
    monkeypatch.setattr(lockfile.metadata, "requires", lambda name: [])
    assert lockfile.compare(LOCKED, TORCH, installed) == (differences, extra)


def test_what_a_cuda_torch_brings_along_is_not_a_difference(monkeypatch):
    requires = {
        "torch": ["nvidia-cublas-cu12==12.6.4.1; platform_system == 'Linux'", "numpy"],
        "nvidia-cublas-cu12": [],
    }
    monkeypatch.setattr(lockfile.metadata, "requires", lambda name: requires.get(name, []))
    installed = {**LOCKED, "torch": "2.13.0+cu126", "nvidia-cublas-cu12": "12.6.4.1", "six": "1.16.0"}
    assert lockfile.compare(LOCKED, TORCH, installed) == ([], ["six==1.16.0"])


def test_a_run_records_the_lock_hashes_and_whether_this_environment_is_it():
    state = lockfile.lock_state(PROJECT_ROOT)
    assert state["sha256"] == {
        str(path): hashlib.sha256((PROJECT_ROOT / path).read_bytes()).hexdigest()
        for path in (lockfile.LOCK, lockfile.TORCH_LOCK)
    }
    found, extra = lockfile.compare(
        lockfile.read_pins(PROJECT_ROOT / lockfile.LOCK),
        lockfile.read_pins(PROJECT_ROOT / lockfile.TORCH_LOCK),
        lockfile.installed(),
    )
    assert state["matches"] == (not found) and state["differences"] == found[:20]
    assert state["not_locked"] == extra[:20]
    assert lockfile.lock_state(None) == {}


def test_the_check_exits_1_naming_the_difference(tmp_path, capsys):
    (tmp_path / "requirements").mkdir()
    (tmp_path / lockfile.LOCK).write_text("peft==0.0.1 \\\n    --hash=sha256:00\n")
    (tmp_path / lockfile.TORCH_LOCK).write_text((PROJECT_ROOT / lockfile.TORCH_LOCK).read_text())
    assert lockfile.main(["--root", str(tmp_path)]) == 1
    assert "peft: locked 0.0.1, installed " in capsys.readouterr().err


def test_the_commit_hook_runs_the_locked_ruff():
    import yaml

    config = yaml.safe_load((PROJECT_ROOT / ".pre-commit-config.yaml").read_text())
    [ruff] = [repo for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit")]
    assert ruff["rev"] == "v" + lockfile.read_pins(PROJECT_ROOT / lockfile.LOCK)["ruff"]
