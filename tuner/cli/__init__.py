"""The CLI wing: click commands that wire storage, profilers and the tuner's core and
review wings, and print what they return. It holds no logic and nothing imports it but the
`latts-tune` entry point (an import-linter contract)."""

from tuner.cli.main import cli, main

__all__ = ["cli", "main"]
