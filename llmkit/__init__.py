"""llmkit: train tokenizers, pretrain, fine-tune, evaluate and sample language models."""

__version__ = "0.1.0"
