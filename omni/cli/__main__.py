"""``python -m omni.cli``: the same as the ``omni`` console script."""

from omni.cli.app import main

main()
