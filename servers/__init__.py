"""One package per MCP server (llm, voice, memory, ansible, tasks) and hostd, the per-host daemon; servers never
import the orchestrator or one another's internals.
"""
