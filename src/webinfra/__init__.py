"""webinfra: one topology file becomes a running web infrastructure.

Layers (each knows only the one below it): model -> plan -> runtime -> services -> control -> cli.
See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
