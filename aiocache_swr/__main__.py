"""``python -m aiocache_swr``: the command line (see :mod:`aiocache_swr._cli`)."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
