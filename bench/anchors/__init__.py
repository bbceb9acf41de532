"""The anchors: the systems Tickwire is measured against, run by the harness exactly as
Tickwire is. Their servers and load generators live here (node/, colyseus/, python/),
their pinned versions too (package-lock.json, requirements*.txt), and install.py puts
them into the cache folder on first use.
"""
