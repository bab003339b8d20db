"""`python -m deco ...`: the `deco` command without the installed console script."""

from deco.cli import main

if __name__ == "__main__":
    main()
