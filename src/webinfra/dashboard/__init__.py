"""`webinfra dashboard`: a live web page of one cluster, served from the management side (app.py)."""
