"""Load the dl_env role's filter plugin as a module (it is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "dl_env"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def dl_env_filters() -> ModuleType:
    name = "gpulab_test_dl_env_filters"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROLE / "filter_plugins" / "dl_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
