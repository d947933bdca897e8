"""Stellar Memory for agents outside Python: an HTTP API with a live event stream
(``http``), an MCP server (``mcp``), and the JSON shapes they and the CLI answer in
(``shapes``). Each module loads its web framework only when imported."""
