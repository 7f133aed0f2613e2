"""What every daemon's lifecycle uses, with no daemon of its own: supervisor.py (start / stop / reload one
ServiceSpec on a Machine, the hooks of daemons/registry.py), pki.py, secrets.py, releases.py (code base releases;
server_releases.py: the same on servers).

May import runtime/, plan/, model/ (import-linter); daemon-specific code is in daemons/.
"""
