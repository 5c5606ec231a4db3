"""``python -m cli``: the same as the ``affectflow`` command."""

from cli.main import main

main()
