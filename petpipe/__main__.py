"""`python -m petpipe ...` is the `petpipe` command."""

from petpipe.cli import main

main()
