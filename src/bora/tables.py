"""``python -m bora.tables``: kept as the short name of ``bora.report.cli`` (see there)."""

from bora.report.cli import main

if __name__ == "__main__":
    main()
