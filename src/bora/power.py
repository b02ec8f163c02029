"""``python -m bora.power``: kept as the short name of ``bora.report.power`` (see there)."""

from bora.report.power import main

if __name__ == "__main__":
    main()
