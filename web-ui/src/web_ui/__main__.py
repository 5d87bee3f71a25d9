"""`web-ui [streamlit options]`: `streamlit run` on this package's page, never phoning home."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from web_ui.settings import UiSettings, load_settings

# Usage statistics off and no browser to open, whatever the options or config files say.
FIXED_OPTIONS: Final = ("--browser.gatherUsageStats", "false", "--server.headless", "true")


def default_options(settings: UiSettings) -> tuple[str, ...]:
    """No "Deploy" button (it leads to a hosting service), and Streamlit's upload limit (200 MB
    by default) cut to the API's; options given on the command line win."""
    return (
        "--client.toolbarMode",
        "minimal",
        "--server.maxUploadSize",
        str(settings.max_upload_mb),
    )


def command(args: list[str], settings: UiSettings | None = None) -> list[str]:
    app = str(Path(__file__).with_name("app.py"))
    options = default_options(settings or load_settings())
    return ["streamlit", "run", app, *options, *args, *FIXED_OPTIONS]


def main() -> None:
    from streamlit.web import cli

    sys.argv = command(sys.argv[1:])
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
