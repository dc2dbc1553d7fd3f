"""``python -m chiffon.orchestrator.cli``: the same as the ``chiffon`` script."""

from chiffon.orchestrator.cli import main

main()
