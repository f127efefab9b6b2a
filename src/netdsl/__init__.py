"""netdsl: a declarative language for PyTorch models.

``.net`` specs compile into ordinary ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict``
trees with a generated forward::

    import netdsl
    model = netdsl.load("examples/alexnet.net", num_classes=10)

The names below are imported on first use: ``import netdsl`` alone, and the
``netdsl --help`` / ``--version`` command, do not import torch.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module of the package that defines it
_HOMES = {
    **dict.fromkeys(("check", "diagnose", "init_report", "load", "load_plan", "loads", "parse",
                     "parse_file", "probe", "reinitialize", "summary"), "api"),
    **dict.fromkeys(("Diagnostic", "InternalError", "NetDSLError", "NetDSLWarning", "Span",
                     "UnknownKeyError"), "errors"),
    "Limits": "limits",
    "export": "exporter",
    "from_module": "fromtorch",
}

__all__ = [
    "Diagnostic", "InternalError", "Limits", "NetDSLError", "NetDSLWarning", "Span",
    "UnknownKeyError", "__version__", "check", "diagnose", "export", "from_module",
    "init_report", "load", "load_plan", "loads", "parse", "parse_file", "probe", "reinitialize",
    "summary",
]


class _Package(types.ModuleType):
    """The package, with its public names read from their modules on first use.

    Not a module ``__getattr__``: importing ``netdsl.api`` sets the submodules ``netdsl.probe``
    and ``netdsl.summary`` as attributes of the package, which would then hide the functions of
    those names.
    """

    def __getattribute__(self, name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            return super().__getattribute__(name)
        return getattr(_home(home), name)


def _home(home: str) -> types.ModuleType:
    if home == "api":
        from . import api

        return api
    if home == "errors":
        from . import errors

        return errors
    if home == "fromtorch":
        from . import fromtorch

        return fromtorch
    if home == "exporter":
        from . import exporter

        return exporter
    from . import limits

    return limits


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
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
    from .errors import (
        Diagnostic,
        InternalError,
        NetDSLError,
        NetDSLWarning,
        Span,
        UnknownKeyError,
    )
    from .exporter import export
    from .fromtorch import from_module
    from .limits import Limits
