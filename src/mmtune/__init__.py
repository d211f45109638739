"""mmtune: fine-tune vision-language models and encoders for multimodal classification."""

__version__ = "0.1.0"
