"""Tickwire's benchmark harness: `python -m bench` (see bench/README.md).

Runs Tickwire and the systems it is compared with (the anchors) side by side on the same
machine, server and load generator in separate processes, and reports server CPU per
unit of work with wall throughput beside it. This package imports only the standard
library, so it runs from any interpreter; the anchors' own packages are installed into
a cache folder on demand.
"""
