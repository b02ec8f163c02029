"""``python -m bora.bench``: the same as ``bora bench``."""

from bora.bench.cli import main

main()
