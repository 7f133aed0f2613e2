"""What every daemon's lifecycle uses, with no daemon of its own: supervisor.py (start / stop / reload one
ServiceSpec, the hooks of daemons/registry.py), probe.py (readiness), pki.py, secrets.py, releases.py.

May import hosts/, plan/, model/ (import-linter); daemon-specific code is in daemons/.
"""
