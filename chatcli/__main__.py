"""Entry point for `python -m chatcli`."""

from chatcli.cli import main

main()
