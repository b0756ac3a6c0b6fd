"""Training configuration of the target networks and the tuned defaults (no torch: the run
configuration validates ``[[targets]] overrides`` against it when it is loaded). The networks are
built by :func:`~and_toolkit.targets.config.build_model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from and_toolkit.targets.ast_config import ASTArchConfig
from and_toolkit.targets.cnn_config import CNNArchConfig
from and_toolkit.targets.pretrain_config import PretrainConfig

__all__ = ["DEFAULT_TARGETS", "FROZEN_PRETRAINED_ARCHS", "PRETRAINED_ARCHS", "Arch", "TrainConfig",
           "override_problems", "target_train_config"]

Arch = Literal["ast", "ast-frozen", "cnn", "yamnet-frozen", "yamnet", "whisper-frozen"]

PRETRAINED_ARCHS: frozenset[str] = frozenset({"yamnet-frozen", "yamnet", "whisper-frozen"})
"""Archs built from packaged pretrained weights; they take waveforms [B, S] at 16 kHz."""
FROZEN_PRETRAINED_ARCHS: frozenset[str] = frozenset({"yamnet-frozen", "whisper-frozen"})
"""Pretrained archs whose backbone is frozen: only a linear head is trained (on cached
clip embeddings, see ``targets/pretrained/head.py``)."""


class TrainConfig(BaseModel):
    """Everything that determines a trained target (besides the data).

    Attributes:
        arch: ``"ast"`` (all layers trained), ``"ast-frozen"`` (random frozen encoder, trained
            classifier), ``"cnn"``, or a pretrained backbone from packaged weights (inputs are
            then waveforms [B, S] at 16 kHz, see :data:`PRETRAINED_ARCHS`):
            ``"yamnet-frozen"`` / ``"whisper-frozen"`` (frozen, linear head on the clip
            embedding) or ``"yamnet"`` (fine-tuned: the top ``yamnet_tuned_blocks`` blocks and
            the head, or all layers).
        ast: AST architecture (used by ``ast`` and ``ast-frozen``).
        cnn: CNN architecture (used by ``cnn``).
        n_classes: Number of classes; targets must lie in ``0..n_classes-1``.
        test_fold: Fold held out for testing (the paper's protocol: fold 1).
        epochs: Passes over the training folds.
        batch_size: Training clips per optimiser step.
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, tokens,
            position embeddings).
        schedule: ``"onecycle"`` (torch OneCycleLR) or ``"cosine"`` (linear warm-up + cosine).
        warmup_frac: Fraction of all steps spent warming up.
        grad_clip: Max global gradient norm, or None.
        label_smoothing: Label-smoothing mass spread uniformly over classes.
        seed: Seed of initialisation, shuffling and augmentation.
        time_shift: Max circular time shift in frames (0 disables).
        time_masks: SpecAugment time bands per clip.
        time_mask_width: Max width of a time band (frames).
        freq_masks: SpecAugment frequency bands per clip.
        freq_mask_width: Max width of a frequency band (mel bins).
        mixup_alpha: Beta(alpha, alpha) mixup concentration (0 disables).
        mixup_prob: Probability that a batch is mixed.
        precision: ``"bf16"`` runs forward/backward under CPU bfloat16 autocast (weights stay
            float32); ``"fp32"`` runs in float32; ``"auto"`` (default) is resolved before
            training by ``resolve_train_config`` (``targets/precision.py``): the environment
            variable ``AND_TRAIN_PRECISION`` (fp32|bf16|auto) if set, else a short probe
            that picks bf16 only if it is measured >= 1.25x faster on this CPU (CPUs without
            native bf16 emulate it many times slower). ``weights_key`` and ``train_target``
            refuse ``"auto"``. Per-epoch test accuracy is always computed in float32.
        threads: torch intra-op threads used while training, or None (default) to let
            ``resolve_train_config`` time 1, half (>= 4 cores) and all usable cores. Not part
            of the weights key: results are bitwise reproducible only at a fixed thread count.
        eval_batch_size: Clips per evaluation batch.
        whisper_window_seconds: ``whisper-frozen`` only: the encoder's input window in
            seconds. 30 (Whisper's, the faithful default) or shorter, e.g. the clip's 5 s
            (6x less compute, the encoder keeps its first position embeddings; its effect on
            accuracy is measured in benchmarks/results/pretrained.json).
        yamnet_tuned_blocks: ``yamnet`` only: fine-tune the top N of YAMNet's 13 separable
            blocks and the head, the stem and lower blocks frozen; their output is computed once
            per clip and cached (``targets/pretrained/partial.py``), so epochs run only the top
            blocks; 14 tunes the stem too (every layer, on cached log-mel patches). None
            fine-tunes every layer on waveforms (the first implementation, ~12x the CPU time of
            N = 2). The ESC-50 default is in :data:`DEFAULT_TARGETS`. Part of the weights key
            of ``yamnet`` only.
        head_sd_floor: frozen pretrained archs only: the head is trained on clip embeddings
            standardised per dimension by ``max(std, head_sd_floor * median std)`` (training
            folds), instead of by the std alone (None). A near-constant dimension (YAMNet's
            ReLU6 channels that are almost always 0) otherwise gets a weight ``1 / std`` times
            larger once the standardisation is folded into the head, and any input that moves
            it (a pruned neuron below it) swings the logits by hundreds. 1.0 scales no
            dimension up more than the median one. Part of the weights key when set.
        patience: early stopping (every arch but the frozen pretrained ones, whose linear head
            trains in seconds): stop once the accuracy on a held-out ``val_fraction`` of the
            training folds has not improved for this many epochs, and keep the best epoch's
            weights (``targets/early_stop.py``); ``epochs`` is then the maximum. None (default)
            trains every epoch on every training clip. Part of the weights key when set.
        val_fraction: share of each class of the training folds held out for ``patience``
            (seeded by ``seed``); used only with ``patience``.
        pretrain: If set (AST archs only), the encoder is first pretrained by masked-patch
            reconstruction on the unlabelled features (SSAST-style), then fine-tuned (``ast``)
            or frozen with a trained head (``ast-frozen``).
        encoder_once: ``ast-frozen`` only: compute the frozen encoder's pooled output once per
            clip and fit the classifier on it (``targets/pooled.py``), instead of running the
            encoder on augmented inputs every epoch (one encoder pass in all instead of one per
            epoch). Input augmentation must then be off (``time_shift``, ``time_masks``,
            ``freq_masks`` = 0); mixup mixes the pooled vectors. Part of the weights key when
            True.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Arch
    ast: ASTArchConfig = ASTArchConfig()
    cnn: CNNArchConfig = CNNArchConfig()
    n_classes: int = Field(default=50, ge=2)
    test_fold: int = 1
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=32, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    warmup_frac: float = Field(default=0.1, ge=0, lt=1)
    grad_clip: float | None = Field(default=5.0, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 0
    time_shift: int = Field(default=0, ge=0)
    time_masks: int = Field(default=2, ge=0)
    time_mask_width: int = Field(default=48, ge=0)
    freq_masks: int = Field(default=2, ge=0)
    freq_mask_width: int = Field(default=8, ge=0)
    mixup_alpha: float = Field(default=0.5, ge=0)
    mixup_prob: float = Field(default=1.0, ge=0, le=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    pretrain: PretrainConfig | None = None
    whisper_window_seconds: float = Field(default=30.0, gt=0, le=30)
    yamnet_tuned_blocks: int | None = Field(default=None, ge=1, le=14)
    head_sd_floor: float | None = Field(default=None, gt=0)
    patience: int | None = Field(default=None, ge=1)
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    encoder_once: bool = False

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.pretrain is not None and not self.arch.startswith("ast"):
            raise ValueError(f"pretrain: only AST archs can be pretrained, not {self.arch!r}")
        if self.yamnet_tuned_blocks is not None and self.arch != "yamnet":
            raise ValueError(f"yamnet_tuned_blocks: only for arch 'yamnet', not {self.arch!r}")
        if self.head_sd_floor is not None and self.arch not in FROZEN_PRETRAINED_ARCHS:
            raise ValueError(f"head_sd_floor: only for the frozen pretrained archs "
                             f"{sorted(FROZEN_PRETRAINED_ARCHS)}, not {self.arch!r}")
        if self.encoder_once:
            if self.arch != "ast-frozen":
                raise ValueError(f"encoder_once: only for arch 'ast-frozen', not {self.arch!r}")
            on = [f for f in ("time_shift", "time_masks", "freq_masks") if getattr(self, f)]
            if on:
                raise ValueError(f"encoder_once: {', '.join(on)} act on log-mel inputs, which "
                                 "the classifier no longer sees; set them to 0")
        if self.patience is not None and self.arch in FROZEN_PRETRAINED_ARCHS:
            raise ValueError(f"patience: early stopping is not implemented for the linear head "
                             f"of {self.arch!r} (its epochs take milliseconds)")
        return self

    @property
    def takes_waveforms(self) -> bool:
        """True when the model's input is waveforms [B, S] (16 kHz), not log-mel [B, T, F]."""
        return self.arch in PRETRAINED_ARCHS

    def arch_payload(self) -> dict[str, object]:
        """The config as a dict without the architecture blocks the ``arch`` does not use;
        pretrained archs add the pinned sha256 of their weight files (``backbone_sha256``)."""
        if self.arch in PRETRAINED_ARCHS:
            from and_toolkit.targets.pretrained.pins import backbone_sha256

            drop = {"cnn", "ast"} | ({"whisper_window_seconds"} if self.arch.startswith("yamnet")
                                     else set())
            if self.arch != "yamnet":  # the keys of the other archs stay as before the field
                drop.add("yamnet_tuned_blocks")
            if self.head_sd_floor is None:  # keys as before the field
                drop.add("head_sd_floor")
            payload = self.model_dump(mode="json", exclude=drop | self._left_out())
            payload["backbone_sha256"] = backbone_sha256(self.arch)
            return payload
        unused = {"whisper_window_seconds", "yamnet_tuned_blocks", "head_sd_floor"}
        drop = unused | ({"cnn"} if self.arch.startswith("ast") else {"ast"})
        return self.model_dump(mode="json", exclude=drop | self._left_out())

    def _left_out(self) -> set[str]:
        """Without ``patience`` its fields are left out, and ``encoder_once`` when False (keys
        as before they existed)."""
        unset = {"patience", "val_fraction"} if self.patience is None else set()
        return unset | ({"encoder_once"} if not self.encoder_once else set())


#: Tuned defaults for ESC-50 (fold 1 = test), 64 mel x 512 frames; see docs / benchmarks.
DEFAULT_TARGETS: dict[str, TrainConfig] = {
    "ast": TrainConfig(arch="ast"),
    "ast-frozen": TrainConfig(arch="ast-frozen"),
    # learned downsampling (strided first convolution) and wider late blocks, 30 epochs: 3.2x
    # fewer multiply-accumulates per clip than the full-resolution CNN (channels 24-48-96-160,
    # stride 1, 20 epochs: 76.75 % on ESC-50 fold 1) at 80.75 % / 82.25 % (seeds 0 / 1),
    # 2.6x less training time (benchmarks/results/cnn_cost.json)
    "cnn": TrainConfig(arch="cnn", epochs=30,
                       cnn=CNNArchConfig(stem_stride=2, channels=(24, 48, 112, 224))),
    # a linear head on frozen float32 clip embeddings: cheap epochs, no augmentation, fp32
    # (pruned evaluations then run the backbone as it was embedded; see head.py). YAMNet's
    # embedding has near-constant dimensions: their std is floored at the median one (without
    # the floor, folded weights reached 35,479 and pruned logits exploded; whisper's head, max
    # |W| 2.9, was trained without it and keeps its key)
    "yamnet-frozen": TrainConfig(arch="yamnet-frozen", epochs=60, lr=1e-3, batch_size=64,
                                 precision="fp32", head_sd_floor=1.0,
                                 weight_decay=1e-2, mixup_alpha=0.0, time_masks=0,
                                 freq_masks=0),
    "whisper-frozen": TrainConfig(arch="whisper-frozen", epochs=60, lr=1e-3, batch_size=64,
                                  precision="fp32",
                                  weight_decay=1e-2, mixup_alpha=0.0, time_masks=0,
                                  freq_masks=0),
    # fine-tuned: the top 2 blocks and the head on the frozen trunk's cached outputs, ~3 CPU-min
    # cold on ESC-50 (fold 1: 82.8 %; top 1 block: 79.0 %; benchmarks/results/
    # yamnet_partial.json); SpecAugment works on log-mel inputs: off
    "yamnet": TrainConfig(arch="yamnet", epochs=8, lr=3e-4, batch_size=32, weight_decay=1e-2,
                          mixup_alpha=0.0, time_masks=0, freq_masks=0, yamnet_tuned_blocks=2),
}


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), dict) else v
    return out


def target_train_config(arch: str, *, seed: int, epochs: int | None,
                        overrides: Mapping[str, Any], num_mel_bins: int, max_length: int,
                        n_classes: int | None = None) -> TrainConfig:
    """The TrainConfig of one ``[[targets]]`` entry: the arch's tuned defaults
    (:data:`DEFAULT_TARGETS`), then the run's dimensions (the target's seed and epochs, the
    features' size, ``n_classes`` when the probe is known), then the target's ``overrides``.

    The run configuration calls it when it is loaded (``n_classes`` unknown: the default), so
    a bad override is refused before any stage runs; the pipeline calls it with the probe's
    class count.

    Raises:
        pydantic.ValidationError: an override that is no TrainConfig field, or a bad value
            (locations relative to ``overrides``).
    """
    dims: dict[str, Any] = {"seed": seed, "ast": {"num_mel_bins": num_mel_bins,
                                                  "max_length": max_length},
                            "cnn": {"num_mel_bins": num_mel_bins}}
    if n_classes is not None:
        dims["n_classes"] = n_classes
    if epochs is not None:
        dims["epochs"] = epochs
    base = DEFAULT_TARGETS[arch].model_dump(mode="json")
    return TrainConfig.model_validate(_deep_merge(_deep_merge(base, dims), overrides))


def override_problems(arch: str, *, seed: int, epochs: int | None,
                      overrides: Mapping[str, Any], num_mel_bins: int, max_length: int
                      ) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """What is wrong with a target's ``overrides`` (:func:`target_train_config` without the
    probe's class count): ``(location within overrides, message, value)`` each; [] if valid."""
    try:
        target_train_config(arch, seed=seed, epochs=epochs, overrides=overrides,
                            num_mel_bins=num_mel_bins, max_length=max_length)
    except ValidationError as exc:
        return [(tuple(e["loc"]), "unknown key (not a TrainConfig field)"
                 if e["type"] == "extra_forbidden" else e["msg"], e["input"])
                for e in exc.errors()]
    return []
