#!/usr/bin/env python
"""``python bench.py ...`` — the same commands as the ``stigbench`` console script."""

from stigbench.cli import main

if __name__ == "__main__":
    main(prog_name="bench.py")
