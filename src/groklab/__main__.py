"""`python -m groklab` is the `groklab` command."""

from groklab.cli import main

main()
