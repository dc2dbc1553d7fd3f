"""The composing MCP server (``chiffon serve``), the CLI, the web console and the REST API: it builds the servers
and hands them to each other.
"""
