"""The web console (``chiffon console``, port 7860): what a human reviews, decides and follows in a browser.

:mod:`.auth` checks operator logins (argon2 hashes from config); :mod:`.actions` holds what the pages do and
show, with no web code (approve, reject, request changes, runs, audit, hosts, agents, voice); :mod:`.app`
builds the Gradio pages over them and serves them with ``/health``.
"""
