"""The user's model file (`--model M.py`) as a module: what `schedc run`, each rank, the profiler
and its contention companions load, and the names it must define.
"""

from __future__ import annotations

import importlib.util


def load_model(path: str):
    """The user's model file as a module (build_stages or build_layers, loss_fn, make_batch)."""
    spec = importlib.util.spec_from_file_location("schedc_user_model", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"schedc: error: cannot load the model file '{path}'")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [n for n in ("loss_fn", "make_batch") if not hasattr(module, n)]
    if not hasattr(module, "build_stages") and not hasattr(module, "build_layers"):
        missing.insert(0, "build_stages (or build_layers)")
    if missing:
        raise SystemExit(f"schedc: error: the model file '{path}' does not define {', '.join(missing)}")
    return module
