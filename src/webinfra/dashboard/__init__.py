"""`webinfra dashboard`: a live web page of one cluster, served from the management side: app.py (the
starlette app: SSE frames, token, actions), serve.py (where it binds), history.py (range queries, markers),
grafana.py (the same panels for Grafana) and static/ (one page, no build step).
May import proving/ and below; only cli/ imports it (import-linter).
"""
