"""``python -m vssbench`` (also what ``torchrun -m vssbench`` runs)."""

from vssbench.cli import main

main()
