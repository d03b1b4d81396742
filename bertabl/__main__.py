"""`python -m bertabl` = the `bertabl` command."""

from bertabl.cli import main

main()
