"""The `webinfra` command (click + rich): main.py is the group and its lazily imported commands, common.py the
shared options and the one error handler, and one module per group of commands (lifecycle, operate, inspect,
release, bench, monitoring, alerting, lab, nemesis); views.py, tables.py and watch.py are what a person sees.
The top layer: may import every package; nothing but cli/ imports cli/ (import-linter). Commands parse,
call a layer and print: no body past ~40 lines.
"""
