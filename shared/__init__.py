"""What every server uses: config, errors, the store and its migrations, the bus, audit, health, metrics, MCP
serving, the queue engine.
"""
