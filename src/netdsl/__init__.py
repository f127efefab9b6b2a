"""netdsl: a declarative language for PyTorch models.

``.net`` specs compile into ordinary ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict``
trees with a generated forward::

    import netdsl
    model = netdsl.load("examples/alexnet.net", num_classes=10)
"""

from .api import (
    check,
    diagnose,
    init_report,
    load,
    load_plan,
    loads,
    parse,
    parse_file,
    probe,
    reinitialize,
    summary,
)
from .errors import Diagnostic, InternalError, NetDSLError, NetDSLWarning, Span, UnknownKeyError
from .limits import Limits

__version__ = "0.1.0"

__all__ = [
    "Diagnostic", "InternalError", "Limits", "NetDSLError", "NetDSLWarning", "Span",
    "UnknownKeyError", "__version__", "check", "diagnose", "init_report", "load", "load_plan",
    "loads", "parse", "parse_file", "probe", "reinitialize", "summary",
]
