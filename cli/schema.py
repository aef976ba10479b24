"""`bjgrid schema`: the app.json JSON Schema (it used to fill most of `submit --help`)."""

from __future__ import annotations

import click

from bonjourgrid.app.load import schema_text


@click.command()
def schema() -> None:
    """Print the JSON Schema of app.json (docs/app-format.md says what it means).

    Point an editor at it, e.g. `bjgrid schema > app.schema.json` and `"$schema":
    "./app.schema.json"` in app.json. The schema covers structure; `bjgrid submit --dry-run`
    runs every other check too.
    """
    click.echo(schema_text())
