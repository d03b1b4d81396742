"""`python -m bertabl` = the `bertabl` command."""

from bertabl.cli import main

if __name__ == "__main__":  # not when a spawned worker (data preparation) imports it as main
    main()
