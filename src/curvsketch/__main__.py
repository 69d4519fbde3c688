"""``python -m curvsketch``: the command line."""

from curvsketch.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
