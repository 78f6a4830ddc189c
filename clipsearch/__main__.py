"""``python -m clipsearch`` runs the CLI."""

from clipsearch.cli import main

if __name__ == "__main__":
    main()
