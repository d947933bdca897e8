"""Streamlit dashboard (the solar-system view, graph, statistics, browser): its own issue."""
