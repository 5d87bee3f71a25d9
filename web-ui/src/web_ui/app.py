"""`streamlit run web-ui/src/web_ui/app.py`: the entry point; the page is `web_ui.page`."""

from web_ui.page import main

main()
