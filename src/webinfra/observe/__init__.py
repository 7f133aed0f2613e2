"""Watching a running cluster without changing it: status snapshots, live frames, Prometheus and
Alertmanager queries, logs, and the monitor daemon (which records events of what it sees).
May import ops.faults (to show active faults), control/ and below; never proving/ or cli/."""
