"""`web-ui [streamlit options]`: `streamlit run` on this package's page, never phoning home."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

# Usage statistics off and no browser to open, whatever the options or config files say.
FIXED_OPTIONS: Final = ("--browser.gatherUsageStats", "false", "--server.headless", "true")
# No "Deploy" button (it leads to a hosting service); options given on the command line win.
DEFAULT_OPTIONS: Final = ("--client.toolbarMode", "minimal")


def command(args: list[str]) -> list[str]:
    app = str(Path(__file__).with_name("app.py"))
    return ["streamlit", "run", app, *DEFAULT_OPTIONS, *args, *FIXED_OPTIONS]


def main() -> None:
    from streamlit.web import cli

    sys.argv = command(sys.argv[1:])
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
