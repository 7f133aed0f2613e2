"""What each daemon renders, one module per daemon: its FileSpecs (from plan/templates/), its ServiceSpec
and readiness Probe, and `contribute(ctx)`, its part of one host's plan (plan/build.py assembles them).

    haproxy, nginx, app, mariadb, dbproxy, keepalived, etcd, agent    one module each
    exporters       node-exporter, mysqld-exporter, nginx-exporter (each a command line and a probe)
    prometheus      scrape targets, prometheus.yml, the firewall flows of its scrapes; alert_rules.py
    alertmanager    alertmanager.yml from [monitoring.alerts]
    monitor         the event watcher, and what the monitoring host runs
    firewall        each host's nftables ruleset, derived from the topology's flows

Pure, like all of plan/: these modules import model/, plan/ and the standard library (plus jinja2, yaml),
never anything that does I/O, so `webinfra plan` and the golden tests build a plan without touching a
machine. The same daemon's lifecycle (hooks, after-start steps, runtime client) lives in the package of the
same name one layer up, webinfra/daemons/, listed in daemons/registry.py.
"""
