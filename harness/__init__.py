"""sticky-harness: end-to-end tests and load for sticky sessions of Engine.IO / Socket.IO apps.

The package is a library first; the ``harness`` command and the locustfiles under ``scenarios/`` are thin
shells over it.
"""

from __future__ import annotations

from harness.errors import HarnessError

__all__ = ["HarnessError", "__version__"]
__version__ = "0.1.0"
