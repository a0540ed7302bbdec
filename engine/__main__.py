"""`python -m engine ...`: the command line (see engine/cli.py)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
