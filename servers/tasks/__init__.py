"""``chiffon-tasks``: multi-agent tasks (product manager, architects, developer, QA, UX researcher, platform
engineer) on the durable queue.
"""
