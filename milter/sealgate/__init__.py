"""sealgate: an S/MIME policy gateway for Postfix.

The decision is a pure function of the message bytes, the envelope, the
trust material and the directory (see ``sealgate.engine``); the milter, the
``sealgate check`` command and the tests all call that one function.
"""

__version__ = "0.1.0"
