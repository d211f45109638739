"""mmtune: fine-tune vision-language models and encoders for multimodal classification."""

import time

__version__ = "0.1.0"

# The time budget's start where the process start cannot be read (training/budget.py): mmtune's first moment.
IMPORTED_AT = time.monotonic()
