"""``python -m shopfusion.cli``: the same as the ``shopfusion`` command."""

from shopfusion.cli import main

main()
