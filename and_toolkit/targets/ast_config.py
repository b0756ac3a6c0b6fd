"""The AST targets' architecture config (no torch: the run configuration validates
``[[targets]] overrides`` against :class:`~and_toolkit.targets.train_config.TrainConfig`, which
embeds it). The network is built by :func:`~and_toolkit.targets.ast.build_ast`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ASTArchConfig"]


class ASTArchConfig(BaseModel):
    """Architecture of the small AST.

    Attributes:
        num_layers: Transformer blocks.
        hidden_size: Token width.
        num_heads: Attention heads (must divide ``hidden_size``).
        intermediate_size: MLP width.
        patch_size: Square patch side (mel bins and frames).
        frequency_stride: Patch stride along mel bins.
        time_stride: Patch stride along frames.
        num_mel_bins: Input mel bins F.
        max_length: Input frames T.
        dropout: Hidden dropout probability.
        attention_dropout: Attention-probability dropout.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_layers: int = Field(default=6, gt=0)
    hidden_size: int = Field(default=192, gt=0)
    num_heads: int = Field(default=3, gt=0)
    intermediate_size: int = Field(default=768, gt=0)
    patch_size: int = Field(default=16, gt=0)
    frequency_stride: int = Field(default=16, gt=0)
    time_stride: int = Field(default=16, gt=0)
    num_mel_bins: int = Field(default=64, gt=0)
    max_length: int = Field(default=512, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> ASTArchConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads: {self.num_heads} does not divide hidden_size {self.hidden_size}"
            )
        if self.patch_size > min(self.num_mel_bins, self.max_length):
            raise ValueError(
                f"patch_size: {self.patch_size} exceeds the input "
                f"({self.max_length} frames x {self.num_mel_bins} mel bins)"
            )
        return self

    def grid(self) -> tuple[int, int]:
        """Number of patches along (frequency, time)."""
        f = (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1
        t = (self.max_length - self.patch_size) // self.time_stride + 1
        return f, t
