"""Recall: lexical and vector candidates, fusion, graph expansion."""
