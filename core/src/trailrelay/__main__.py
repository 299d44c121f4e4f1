"""``python -m trailrelay`` runs the CLI."""

from trailrelay.cli.main import main

main()
