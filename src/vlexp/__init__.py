"""vlexp: Hydra-configured post-training of vision-language models on TRL.

Importing this package is cheap on purpose: torch, transformers and trl are imported inside
the functions that need them, so composing a config or printing help answers in a second.
"""

__version__ = "0.1.0"
