"""Device and precision: CUDA (bf16, else fp16) when present, else Apple MPS, else CPU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda", "mps" or "cpu"
    bf16: bool
    fp16: bool

    @property
    def autocast_dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else None


def select(preferred: str = "auto") -> Placement:
    """Pick where to run: `auto` takes the best available; or force `cpu` / `cuda` / `mps`."""
    import torch

    if preferred == "auto":
        if torch.cuda.is_available():
            preferred = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            preferred = "mps"
        else:
            preferred = "cpu"
    if preferred == "cuda":
        if not torch.cuda.is_available():
            from flowsentry.errors import ConfigError

            raise ConfigError("device 'cuda' asked for, but torch sees no CUDA GPU")
        bf16 = torch.cuda.is_bf16_supported()
        return Placement("cuda", bf16=bf16, fp16=not bf16)
    return Placement(preferred, bf16=False, fp16=False)
