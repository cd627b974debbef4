"""ReasonAct: progressive training of a small video-language model for action reasoning."""

import logging
import os
import warnings

from reasonact import _torchvision_fix

_torchvision_fix.install()

# Hugging Face's own progress bars (loading weights, saving a dataset) are ipywidgets in a notebook,
# which show "Error displaying widget" once the notebook is reopened; they take seconds here. Our long
# steps have bars of their own (reasonact/progress.py). Set either variable to 0 to get them back.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


class _DropBnbKernelHubWarning(logging.Filter):
    """bitsandbytes, imported by peft, tries to fetch an optional CPU 4-bit kernel from a kernel hub on
    CPUs with AVX512-BF16 and logs "Failed to load CPU gemm_4bit_forward ..." when it cannot (no
    network, no ``kernels`` package); it then uses its built-in CPU kernel. Nothing asked for 4-bit, so
    the warning is only noise a student would read as an error: drop that one message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropBnbKernelHubWarning())

# peft 0.21 reads `model.is_gradient_checkpointing` whenever it wraps a model, a property transformers 5
# deprecated: the FutureWarning is about peft's code, not the caller's, and nothing the user can change.
warnings.filterwarnings(
    "ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

__version__ = "0.1.0"
