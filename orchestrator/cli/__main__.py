"""``python -m orchestrator.cli``: the same as the ``chiffon`` script."""

from orchestrator.cli import main

main()
