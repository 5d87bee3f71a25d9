"""`python -m simulator` and the `simulator` console script."""

from simulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
