"""CLI tests (click CliRunner, no network)."""
