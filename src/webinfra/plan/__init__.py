"""Topology -> ClusterPlan, as plain values: spec.py (FileSpec, Probe, ServiceSpec, HostPlan, ClusterPlan, the
start order), render.py (templates, TLS settings, HostContext), daemons/ (what each
daemon renders) and build.py (assembles the daemons' contributions for every host).

Pure: imports model/ and nothing that does I/O (import-linter: plan is below runtime/, services/, daemons/);
every path comes from webinfra.state.
"""
