"""The committed dependency lock and how the running environment compares with it.

``requirements/lock.txt`` pins every dependency but torch (exact versions, SHA-256 hashes); torch is installed
first, from ``requirements/torch-cpu.txt`` (the CPU build, hashed) or from a CUDA index (``make install
TORCH_INDEX=...``), so the same lock serves CPU and GPU machines. ``python -m bora.lockfile`` exits 1 and names
every difference when the environment is not exactly the lock (``make install`` runs it last).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

LOCK = Path("requirements") / "lock.txt"
TORCH_LOCK = Path("requirements") / "torch-cpu.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_NOT_LOCKED = {"bora"}  # the project itself, installed from the checkout


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a pip requirements file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        found = _PIN.match(line)
        if found:
            pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def _requirements_closure(root: str, versions: dict[str, str]) -> set[str]:
    """``root`` and every installed distribution it requires, transitively (markers ignored: an over-count only
    excuses a package torch could bring)."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in versions:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            try:
                todo.append(canonicalize_name(Requirement(line).name))
            except InvalidRequirement:
                continue
    return seen


def compare(lock: dict[str, str], torch_lock: dict[str, str], versions: dict[str, str]) -> tuple[list[str], list[str]]:
    """How the environment ``versions`` departs from the lock: (differences, packages not in the lock), a line each.

    Every locked package must be installed at its locked version. torch must be the locked release; its local
    label (``+cpu``, ``+cu126``) may differ, and what a CUDA build of torch brings along (``nvidia-*``, ``triton``)
    is not in the lock. Anything else installed (a model package installed by hand) is not in the lock."""
    found = []
    for name, version in sorted(lock.items()):
        if name not in versions:
            found.append(f"{name}: locked {version}, not installed")
        elif versions[name] != version:
            found.append(f"{name}: locked {version}, installed {versions[name]}")
    torch_brought = set()
    for name, version in torch_lock.items():
        if name not in versions:
            found.append(f"{name}: locked {version}, not installed")
            continue
        if versions[name].split("+")[0] != version.split("+")[0]:
            found.append(f"{name}: locked {version}, installed {versions[name]}")
        torch_brought |= _requirements_closure(name, versions)
    extra = [f"{name}=={versions[name]}" for name in sorted(set(versions) - set(lock) - torch_brought - _NOT_LOCKED)]
    return found, extra


def lock_state(root: Path | None) -> dict[str, Any]:
    """What a run records: each lock file's SHA-256, whether every locked package was installed at its locked
    version (``matches``, else the ``differences``), and what was installed beside the lock. Empty where bora runs
    without its checkout (an installed wheel)."""
    if root is None or not (root / LOCK).is_file() or not (root / TORCH_LOCK).is_file():
        return {}
    found, extra = compare(read_pins(root / LOCK), read_pins(root / TORCH_LOCK), installed())
    return {
        "sha256": {str(path): hashlib.sha256((root / path).read_bytes()).hexdigest() for path in (LOCK, TORCH_LOCK)},
        "matches": not found,
        "differences": found[:20],
        "not_locked": extra[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bora.lockfile", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout holding requirements/")
    args = parser.parse_args(argv)
    for path in (LOCK, TORCH_LOCK):
        if not (args.root / path).is_file():
            print(f"error: {args.root / path} not found; run from the checkout (or pass --root)", file=sys.stderr)
            return 2
    found, extra = compare(read_pins(args.root / LOCK), read_pins(args.root / TORCH_LOCK), installed())
    lines = found + [f"{package}: installed, not in the lock" for package in extra]
    if lines:
        print(
            f"error: this environment is not {LOCK} ({len(lines)} differences); rebuild it with `make install`:",
            file=sys.stderr,
        )
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"environment = {LOCK} + {TORCH_LOCK} ({len(read_pins(args.root / LOCK)) + 1} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
