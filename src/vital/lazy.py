"""Package attributes loaded on first use: importing a package then imports none of its heavy modules.

>>> __getattr__, __dir__ = lazy_attributes(__name__, {"Selector": "vital.selector.model"})

placed in a package's ``__init__.py``, makes ``package.Selector`` import
``vital.selector.model`` the first time it is asked for (and keep it).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, where ``names`` maps an attribute to its module."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__
