"""``python -m vssbench.cli`` (the same as ``python -m vssbench``)."""

from vssbench.cli import main

main()
