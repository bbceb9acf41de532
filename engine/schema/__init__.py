"""The schema compiler: FlatBuffers schema text to codecs for Python and JavaScript.

A pipeline of pure stages (parse -> model -> generate `(path, text)` pairs) and one writer;
see compile.py for the command line.
"""

from .model import Model, load
from .parse import SchemaError

__all__ = ["Model", "SchemaError", "load"]
