"""`webinfra chaos`: break one thing under a read/write load and measure what the site saw.

scenarios.py   the scenario table, resolved from roles (VIP holder, current primary, ...) to a target
run.py         bring up a cluster for it; run one scenario (load, monitor, inject, recover, measure)
splitbrain.py  the split-brain monitor (two writable primaries) and the acknowledged-writes check
report.py      the figures, computed from the load's record; table, JSON and Markdown
plot.py        the timeline PNG of one run
suite.py       `chaos all` (report.md + PNGs) and `chaos compare` (docs/RESILIENCE.md)
"""
