"""TAB's audio-text model trained here (``closed.tab_model = "trained"``): train on a cache
miss, load, zero-shot accuracy on the held-out fold, and what the closed stage recorded of it.
The loaded model is kept on the :class:`Context` for the rest of the process."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.errors import DataError
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.targets import labels_of

__all__ = ["LoadedAudioText", "audio_text_zero_shot", "load_audio_text", "recorded_audio_text"]


@dataclass(frozen=True)
class LoadedAudioText:
    """The trained audio-text model of TAB (``closed.tab_model = "trained"``) and its making.

    Attributes:
        encoder: the model as an ``AudioTextEncoder``
            (:class:`~and_toolkit.targets.audio_text_encoder.TrainedAudioTextEncoder`).
        provenance: what it was trained on and how (captioner, folds, clips, config, epochs,
            seed, weights key, final loss, train seconds); goes into the closed stage's manifest
            entry and the ConceptSet file's metadata.
        trained_now: trained by this load (in this process), not read from the cache.
    """

    encoder: Any
    provenance: dict[str, Any]
    trained_now: bool = False


def recorded_audio_text(ctx: Context) -> dict[str, Any] | None:
    """The provenance of TAB's trained audio-text model as the closed stage recorded it
    (``stages.closed.tab_model``: model id, training data, clips, epochs, seed, zero-shot
    accuracy), or None when the closed stage has not run or TAB used CLAP."""
    if not ctx.run.stage_done("closed"):
        return None
    made = ctx.run.stage_info("closed").get("tab_model")
    return made if isinstance(made, dict) and made else None


def load_audio_text(ctx: Context, text_encoder: Any) -> LoadedAudioText:
    """The trained audio-text model (trains on a cache miss), kept on the context.

    Trained on the run's log-mel features and the imported captions (``captions.captioner_id``,
    never the descriptor sentences) of every clip outside ``closed.audio_text.test_fold``,
    embedded by the frozen ``text_encoder`` (the pipeline's cached MiniLM). Weights and curve are
    cached under :func:`~and_toolkit.targets.audio_text.audio_text_key`.

    Raises:
        DataError: a probe clip has no caption of that captioner.
    """
    key_ctx = "<closed.tab_model: trained>"  # not a valid target id: no clash in ctx.targets
    if key_ctx in ctx.targets:
        return ctx.targets[key_ctx]  # type: ignore[no-any-return]
    from and_toolkit.targets import features_sha, load_weights, save_weights
    from and_toolkit.targets.audio_text import audio_text_key, build_audio_text, train_audio_text
    from and_toolkit.targets.audio_text_encoder import TrainedAudioTextEncoder
    from and_toolkit.targets.precision import resolve_precision

    cfg = ctx.cfg.closed.audio_text
    cnn = cfg.cnn.model_copy(update={"num_mel_bins": ctx.cfg.features.num_mel_bins})
    # the run's mel bins, like the targets'; "auto" precision measured as for the targets
    # (bf16 only where it is faster: emulated bf16 trains many times slower)
    precision = resolve_precision(cfg.precision, cfg.threads, ctx.cache).precision
    cfg = cfg.model_copy(update={"cnn": cnn, "precision": precision})
    captioner = ctx.cfg.captions.captioner_id
    caps = ctx.run.captions(captioner)
    clips = ctx.probe()["clip_id"].to_list()
    missing = [c for c in clips if c not in caps]
    if missing:
        raise DataError(f"{ctx.run.root / 'captions.parquet'}: field 'text': no caption of "
                        f"{captioner!r} for {len(missing)} probe clips, e.g. {missing[:3]}")
    texts = [caps[c] for c in clips]
    features = ctx.features()
    _, folds = labels_of(ctx)
    key = audio_text_key(cfg, features_sha(features), texts, str(text_encoder.id), folds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        raw = ctx.cache.get_bytes("weights", key)
        made = ctx.cache.get_json("curves", key)
        fresh = raw is None or made is None
        if raw is None or made is None:
            cap_emb = np.asarray(text_encoder.encode(texts), dtype=np.float32)
            trained = train_audio_text(cfg, features, cap_emb, folds, progress=ctx.progress)
            save_weights(trained.model, path)
            ctx.cache.put_bytes("weights", key, path.read_bytes())
            made = {"curve": trained.curve, "n_train": trained.n_train,
                    "text_dim": int(cap_emb.shape[1])}
            ctx.cache.put_json("curves", key, made)
            model = trained.model
        else:
            path.write_bytes(raw)
            model = build_audio_text(cfg, int(made["text_dim"]))
            load_weights(model, path)
    curve = list(made["curve"])
    encoder = TrainedAudioTextEncoder(model, text_encoder, ctx.feature_config(),
                                      model_id=f"audio-text-cnn@{key[:12]}")
    provenance = {
        "model": encoder.id, "architecture": "log-mel CNN audio tower + frozen "
        f"{text_encoder.id} text tower, projection heads, symmetric InfoNCE",
        "trained_on": f"captions {captioner!r} of the {ctx.cfg.probe.kind} clips of folds "
                      f"{', '.join(map(str, sorted(set(folds.tolist()) - {cfg.test_fold})))} "
                      f"(all but test fold {cfg.test_fold}; no class labels)",
        "train_clips": int(made["n_train"]), "test_fold": cfg.test_fold,
        "epochs": cfg.epochs, "seed": cfg.seed, "precision": cfg.precision,
        "weights_key": key, "config": cfg.model_dump(mode="json"),
        "final_loss": round(float(curve[-1]["train_loss"]), 4) if curve else None,
        "train_seconds": round(sum(float(c["seconds"]) for c in curve), 1),
    }
    loaded = LoadedAudioText(encoder=encoder, provenance=provenance, trained_now=fresh)
    ctx.targets[key_ctx] = loaded
    return loaded


def audio_text_zero_shot(ctx: Context, loaded: LoadedAudioText, texts: list[str]
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Embed every probe clip and one text per class; zero-shot accuracy on the held-out fold.

    Args:
        loaded: the trained model (:func:`load_audio_text`).
        texts: one text per class id 0..C-1 (TAB's concept texts: the class names).

    Returns:
        (audio float32 [N, d], texts float32 [C, d], both L2-normalised;
        ``{"zero_shot_accuracy": fraction or None when the fold is empty, "zero_shot_clips"}``).
    """
    from and_toolkit.targets.audio_text import zero_shot_accuracy

    audio = loaded.encoder.encode_features(ctx.features())  # = logmel of ctx.waveforms()
    concepts = loaded.encoder.encode_text(texts)
    probe = ctx.probe()
    test = probe["fold"].to_numpy() == ctx.cfg.closed.audio_text.test_fold
    acc = (zero_shot_accuracy(audio[test], concepts, probe["target"].to_numpy()[test])
           if test.any() else None)
    return audio, concepts, {"zero_shot_accuracy": acc, "zero_shot_clips": int(test.sum())}
