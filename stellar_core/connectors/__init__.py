"""Connectors turn outside sources (files, web pages, APIs) into memories.

Each connector chunks its input, records where every chunk came from (``Source``) and is
idempotent: ingesting the same content again adds nothing.
"""
