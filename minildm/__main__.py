"""python -m minildm COMMAND: see minildm/cli.py, or run with --help."""

import sys

from minildm.cli import main

if __name__ == "__main__":
    sys.exit(main())
