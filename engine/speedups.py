"""The C extension engine/_speedups.c, when it was built and is wanted.

`native` is the extension module, or None: no compiler at install time, or the
environment sets TICKWIRE_NO_SPEEDUPS to a non-empty value (to compare, or to rule the
extension out when hunting a bug). Each function in it has a pure-Python twin that is
the reference; callers use the native one when `native` is not None:

- engine/interest.py: sync_records (a tick's records and their bytes), join_messages
  (the messages shared per view centre);
- engine/entities.py: wire_quant and wire_int (a field's wire integers and change bits);
- engine/rooms.py: room_sections (the players' sections of a send tick);
- engine/socket.py: room_frames (the worker's writes of a send tick).

tests/test_speedups.py holds each pair to the same output.
"""

from __future__ import annotations

import os
from types import ModuleType

native: ModuleType | None
try:
    from . import _speedups as native
except ImportError:
    native = None

if os.environ.get("TICKWIRE_NO_SPEEDUPS"):
    native = None
