"""Make transformers importable with a CPU-only torch (the one place that does it).

PyPI only ships a CUDA build of torchvision. With a CPU build of torch, ``import torchvision``
fails with ``operator torchvision::nms does not exist`` because the compiled ops library does
not load, and transformers, peft, trl and sentence-transformers then fail to import too (they
import torchvision for the Qwen2-VL video processor). torchvision only needs the *schemas* of
``nms`` and ``qnms`` to exist at import time; we never call them. So, only when torch is a CPU
build, we define those two schemas before torchvision is first imported.

This is installed as an import hook by ``reasonact/__init__.py`` so that importing ``reasonact``
costs nothing (torch is only imported when torchvision is). Import ``reasonact`` before anything
that imports torchvision. On a CUDA build of torch it does nothing.
"""

from __future__ import annotations

import importlib.abc
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_done = False


def define_missing_ops() -> bool:
    """Define torchvision's nms/qnms schemas if torch is a CPU build. Returns True if it acted."""
    global _done
    if _done:
        return False
    _done = True
    import torch

    if torch.version.cuda is not None or torch.version.hip is not None:
        return False
    try:
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - keeps the namespace alive
    except RuntimeError:  # namespace already defined (real torchvision ops loaded)
        return False
    for schema in _SCHEMAS.values():
        try:
            lib.define(schema)
        except RuntimeError:
            pass
    _LIBS.append(lib)
    return True


_LIBS: list = []


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            define_missing_ops()
        return None  # let the normal finders import it


def install() -> None:
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
