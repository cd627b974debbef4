"""ReasonAct: progressive training of a small video-language model for action reasoning."""

from reasonact import _torchvision_fix

_torchvision_fix.install()

__version__ = "0.1.0"
