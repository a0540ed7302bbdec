"""Gradient Inversion Lab: the browser app. Run with `streamlit run app.py`.

This file only lays out the pages (st.navigation) and the lecture-mode bar in the sidebar; each
page is a thin script in pages/, and every computation happens in engine/.
"""

import streamlit as st

from pages import common, lecture

st.set_page_config(page_title="Gradient Inversion Lab", page_icon=":material/lock_open:", layout="wide")

pages = [
    st.Page(info.path, title=info.title, icon=info.icon, url_path=info.key, default=info.key == "home")
    for info in common.PAGES
]
current = st.navigation(pages)
common.config()  # a deep link's settings are read on the session's first run, then kept in the URL
lecture.sidebar()
with common.through_app():  # the page sees that app.py laid it out (see common.header)
    current.run()
