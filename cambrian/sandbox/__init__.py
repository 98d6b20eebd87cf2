"""Where candidate code runs.

``get_sandbox(config)`` builds the configured backend; ``ProcessSandbox`` runs commands
as local processes under bubblewrap (or rlimits only); ``make_limits`` turns the sandbox
config section and a timeout into per-run ``Limits``.
"""

from cambrian.sandbox._factory import get_sandbox
from cambrian.sandbox._limits import make_limits
from cambrian.sandbox._process import ProcessSandbox

__all__ = ["ProcessSandbox", "get_sandbox", "make_limits"]
