"""netdsl: a declarative language for PyTorch models.

``.net`` specs compile into ordinary ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict``
trees with a generated forward::

    import netdsl
    model = netdsl.load("examples/alexnet.net", num_classes=10)
"""

from .api import (
    check,
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
from .errors import InternalError, NetDSLError, Span, UnknownKeyError
from .limits import Limits

__version__ = "0.1.0"

__all__ = [
    "InternalError", "Limits", "NetDSLError", "Span", "UnknownKeyError", "__version__", "check",
    "init_report", "load", "load_plan", "loads", "parse", "parse_file", "probe", "reinitialize",
    "summary",
]
