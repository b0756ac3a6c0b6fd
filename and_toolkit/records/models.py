"""Every record kind of and-toolkit. Field docs state units and shapes; they are the reference.

A neuron is keyed everywhere by ``(model, layer, unit)``: ``model`` is the target-network id,
``layer`` the torch module path (e.g. ``audio_spectrogram_transformer.layers.3.mlp.fc1``) and
``unit`` the output-channel index within that module.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from and_toolkit.records.base import F32, I32, AllowNonFinite, Record, Vector

NonEmpty = Annotated[str, Field(min_length=1)]
Side = Literal["high", "low"]


NEURON_KEY: tuple[str, str, str] = ("model", "layer", "unit")

CAPTION_VARIANTS: tuple[str, ...] = ("", "descriptors")
"""The caption variants the dissection runs on: ``""`` = the imported captions alone (the
paper's setting, the primary result) and ``"descriptors"`` = those captions extended by our
acoustic-descriptor sentences (a separately labelled variant)."""


def open_method(variant: str) -> str:
    """ConceptSet ``method`` of Module C's adjectives of a caption variant: ``"OCP"`` for the
    captions alone, ``"OCP+descriptors"`` for captions + descriptors.

    Raises:
        ValueError: an unknown variant.
    """
    if variant not in CAPTION_VARIANTS:
        raise ValueError(f"unknown caption variant {variant!r} (known: {CAPTION_VARIANTS})")
    return f"OCP+{variant}" if variant else "OCP"


POS_METHODS: dict[str, str] = {"NOUN": "POS:NOUN", "VERB": "POS:VERB", "ADP": "POS:ADP"}
"""ConceptSet ``method`` of Module C's non-adjective part-of-speech lists (captions alone)."""
"""The key of one neuron in every neuron-level record: target id, module path, channel index."""


class ProbeClip(Record):
    """One clip of a probing set D_p."""

    record_name: ClassVar[str] = "ProbeClip"
    primary_key: ClassVar[tuple[str, ...]] = ("dataset", "clip_id")

    dataset: NonEmpty = Field(description="Probing-set id, e.g. 'esc50' or 'synthetic'.")
    clip_id: NonEmpty = Field(description="Clip id unique within the dataset (file stem).")
    index: Annotated[int, I32, Field(ge=0)] = Field(
        description="Row of this clip in activation vectors (0-based, probe order).")
    path: str = Field(description="Audio path relative to the dataset root; '' if generated.")
    label: NonEmpty = Field(description="Class name (ground truth), e.g. 'dog'.")
    target: Annotated[int, I32, Field(ge=0)] = Field(description="Class id.")
    fold: Annotated[int, I32, Field(ge=0)] = Field(description="Cross-validation fold (1-based).")
    sample_rate: Annotated[int, I32, Field(gt=0)] = Field(description="Sample rate in Hz.")
    n_samples: Annotated[int, Field(gt=0)] = Field(description="Length in samples.")


class Caption(Record):
    """A natural-language description of one probe clip."""

    record_name: ClassVar[str] = "Caption"
    primary_key: ClassVar[tuple[str, ...]] = ("dataset", "clip_id", "captioner")

    dataset: NonEmpty = Field(description="Probing-set id.")
    clip_id: NonEmpty = Field(description="Clip id (matches ProbeClip.clip_id).")
    captioner: NonEmpty = Field(description="Captioner id, e.g. 'qwen2-audio-7b-instruct'.")
    text: NonEmpty = Field(description="The caption (UTF-8, untrusted text).")
    prompt: str = Field(description="Prompt given to the captioner ('' if none).")
    provenance: str = Field(description="JSON object: backend, weights, thresholds, source file.")


class ActivationTable(Record):
    """Activations of one neuron on every probe clip."""

    record_name: ClassVar[str] = "ActivationTable"
    primary_key: ClassVar[tuple[str, ...]] = NEURON_KEY

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path of the recorded module.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    alias: str = Field(description="Short layer name, e.g. 'block3.fc1'.")
    block: Annotated[int, I32] | None = Field(description="1-based block index, null if none.")
    pooling: Literal["cls", "first", "mean", "max", "none"] = Field(
        description="How tokens / time-frequency positions were pooled to one value per clip.")
    probe_sha256: NonEmpty = Field(description="Hash of the ordered probe clip ids.")
    values: Vector = Field(description="Float32 [N]: activation on each clip, probe order.")


class Extremes(Record):
    """The K most and least activating clips of one neuron."""

    record_name: ClassVar[str] = "Extremes"
    primary_key: ClassVar[tuple[str, ...]] = (*NEURON_KEY, "side")

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    side: Side = Field(description="'high' = top-K (descending), 'low' = bottom-K (ascending).")
    k: Annotated[int, I32, Field(gt=0)] = Field(description="Number of clips K.")
    clip_ids: list[str] = Field(description="[K] clip ids; ties broken by value, then clip_id.")
    values: list[Annotated[float, F32]] = Field(description="[K] signed activations.")


class Summary(Record):
    """A summary of the captions of one neuron's top-K (S_h) or bottom-K (S_l) clips."""

    record_name: ClassVar[str] = "Summary"
    primary_key: ClassVar[tuple[str, ...]] = (*NEURON_KEY, "side")

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    side: Side = Field(description="'high' (S_h) or 'low' (S_l).")
    text: str = Field(description="Raw summary text as generated (untrusted).")
    points: list[str] = Field(description="The summary split into points (sentences).")
    summarizer: NonEmpty = Field(description="Summariser id (LLM id or 'extractive-v1').")
    sampling: str = Field(description="JSON of the sampling config ('{}' if deterministic).")
    prompt_sha256: str = Field(description="sha256 of the prompt ('' for extractive).")
    clip_ids: list[str] = Field(description="[K] clips whose captions were summarised.")


class CalibratedSummary(Record):
    """Module B output: S_h points with those similar to a point of S_l removed."""

    record_name: ClassVar[str] = "CalibratedSummary"
    primary_key: ClassVar[tuple[str, ...]] = NEURON_KEY

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    kept: list[str] = Field(description="Points of S_h kept (S_h^c).")
    dropped: list[str] = Field(description="Points of S_h dropped.")
    dropped_match: list[str] = Field(description="For each dropped point, the S_l point matched.")
    dropped_cos: list[Annotated[float, F32]] = Field(description="Cosine of each drop, in [-1,1].")
    threshold: float = Field(description="Cosine threshold t; a point is dropped if cos > t.")
    rule: Literal["paper", "reference"] = Field(description="Calibration rule.")
    encoder: NonEmpty = Field(description="Sentence-encoder id.")


class ConceptSet(Record):
    """Concepts of one neuron, long format: one row per (neuron, method, similarity, concept)."""

    record_name: ClassVar[str] = "ConceptSet"
    primary_key: ClassVar[tuple[str, ...]] = (*NEURON_KEY, "method", "similarity", "concept")

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    method: NonEmpty = Field(description="'DB', 'TAB', 'ICL' (closed); 'OCP' / "
                            "'OCP+descriptors' (open adjectives of the captions alone / with "
                            "descriptor sentences) or 'POS:NOUN' / 'POS:VERB' / 'POS:ADP'.")
    similarity: str = Field(description="Similarity function for DB/TAB ('' otherwise).")
    concept: NonEmpty = Field(description="Concept name (closed: from D_c; open: a word).")
    kind: Literal["closed", "open"] = Field(description="Closed- or open-set concept.")
    rank: Annotated[int, I32, Field(ge=0)] = Field(description="0 = best; order of output.")
    score: Annotated[float, AllowNonFinite()] | None = Field(
        description="Similarity score (higher = better); null for ICL/open.")
    pos: str | None = Field(description="Part of speech (ADJ/NOUN/VERB/ADP) for open concepts.")
    verdict: NonEmpty = Field(
        description="'kept' or 'dropped:<filter>' (negation, dummy, not-acoustic).")


class TrainingCurve(Record):
    """One epoch of training a target network."""

    record_name: ClassVar[str] = "TrainingCurve"
    primary_key: ClassVar[tuple[str, ...]] = ("model", "epoch")

    model: NonEmpty = Field(description="Target-network id.")
    epoch: Annotated[int, I32, Field(ge=1)] = Field(description="1-based epoch.")
    train_loss: float = Field(description="Mean training loss over the epoch (nats).")
    test_accuracy: Annotated[float, Field(ge=0, le=1)] = Field(
        description="Top-1 accuracy on the test fold, in [0, 1].")
    seconds: Annotated[float, Field(ge=0)] = Field(description="Wall time of the epoch, s.")


class ResultRow(Record):
    """A tidy row of an experiment result (one paper table cell or figure point)."""

    record_name: ClassVar[str] = "ResultRow"
    primary_key: ClassVar[tuple[str, ...]] = ("experiment", "key")

    experiment: NonEmpty = Field(description="Experiment id, e.g. 'table7'.")
    key: NonEmpty = Field(description="Unique id of the row within the experiment.")
    model: str = Field(description="Target-network id ('' if not model-specific).")
    group: str = Field(description="Grouping, e.g. method 'DB' or criterion 'nouns'.")
    series: str = Field(description="Series within the group, e.g. similarity 'cos_cubed'.")
    x: Annotated[float, AllowNonFinite()] | None = Field(
        description="x coordinate for figure rows (e.g. block or % ablated); null for tables.")
    metric: NonEmpty = Field(description="Metric name, e.g. 'top1' (units in the report).")
    value: Annotated[float, AllowNonFinite()] | None = Field(
        description="Our value; null when not run.")
    paper_value: Annotated[float, AllowNonFinite()] | None = Field(
        description="The paper's value where one exists.")
    note: str = Field(description="Free text: 'not run: <why>', config notes.")


class Rating(Record):
    """One human rating of one method's description of one neuron (the explorer's rating mode,
    Table 3's human study). Appended to ``<run>/ratings.parquet``; never edited."""

    record_name: ClassVar[str] = "Rating"
    primary_key: ClassVar[tuple[str, ...]] = (*NEURON_KEY, "method", "rater", "rating_id")

    rating_id: NonEmpty = Field(description="Unique id of this rating (32 hex digits, uuid4).")
    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    method: NonEmpty = Field(description="Method whose description was rated: 'TAB', 'DB', "
                             "'ICL' (rank-0 closed concept) or 'SUM' (S_h^c).")
    description: NonEmpty = Field(description="The description text shown to the rater "
                                  "(untrusted), as the run held it when rated.")
    rating: Annotated[int, I32, Field(ge=1, le=5)] = Field(
        description="Rating on the paper's 1-5 scale (5 = describes the clips best).")
    rater: NonEmpty = Field(description="Rater id as typed by the rater (untrusted).")
    comment: str | None = Field(description="Free-text comment (untrusted); null if none.")
    created: NonEmpty = Field(description="UTC time of the rating, ISO 8601 with seconds.")
class ExplanationScore(Record):
    """How well one description of one neuron predicts its activations on held-out clips.

    The detection score of issue 15 (``dissect/scoring.py``): the similarity between the
    description and each clip (its caption, or its audio) predicts whether the clip is in the
    neuron's top ``q`` of activations, over the clips that did not produce the description.
    """

    record_name: ClassVar[str] = "ExplanationScore"
    primary_key: ClassVar[tuple[str, ...]] = (
        *NEURON_KEY, "kind", "method", "similarity", "variant", "source")

    model: NonEmpty = Field(description="Target-network id.")
    layer: NonEmpty = Field(description="Torch module path.")
    unit: Annotated[int, I32, Field(ge=0)] = Field(description="Output channel index.")
    kind: Literal["closed", "summary", "open"] = Field(
        description="Description kind: the top-1 closed-set concept, the calibrated summary "
        "S_h (kept points joined), or the open-set concepts joined as one phrase.")
    method: NonEmpty = Field(description="'DB' / 'TAB' / 'ICL' (closed), 'SUM' (summary), "
                            "'OCP' (open).")
    similarity: str = Field(description="Closed: the similarity function or ICL prompt; "
                            "'' otherwise.")
    variant: Literal["", "descriptors"] = Field(
        description="Caption variant: '' = imported captions alone (caption text and "
        "descriptions), 'descriptors' = with our acoustic-descriptor sentences.")
    source: Literal["caption", "audio"] = Field(
        description="Clip side of the similarity: the clip's caption (text encoder) or its "
        "audio (audio-text encoder).")
    description: NonEmpty = Field(description="The text scored (untrusted model output).")
    encoder: NonEmpty = Field(description="Encoder id of the similarity.")
    q: Annotated[float, Field(gt=0, lt=1)] = Field(
        description="Share of held-out clips that may count as the neuron's top (positives).")
    n_heldout: Annotated[int, I32, Field(ge=0)] = Field(
        description="Held-out clips (probe clips minus every top-K / bottom-K clip used).")
    n_positive: Annotated[int, I32, Field(ge=0)] = Field(
        description="Held-out clips above the neuron's top-q boundary.")
    auc: Annotated[float, Field(ge=0, le=1)] | None = Field(
        description="ROC AUC of the similarity predicting a positive, in [0, 1] (0.5 = "
        "chance); null without positives or negatives.")
    spearman: Annotated[float, Field(ge=-1, le=1)] | None = Field(
        description="Spearman correlation of similarity and activation over the held-out "
        "clips; null when either is constant.")
    null_auc: Annotated[float, Field(ge=0, le=1)] | None = Field(
        description="AUC of the description of another neuron of the layer (seeded "
        "shuffle) on this neuron; null when the layer has one described neuron.")
    null_spearman: Annotated[float, Field(ge=-1, le=1)] | None = Field(
        description="Spearman of that shuffled description on this neuron.")
    null_unit: Annotated[int, I32, Field(ge=0)] | None = Field(
        description="Unit whose description gave the null (same layer).")


ALL_RECORDS: tuple[type[Record], ...] = (
    ProbeClip, Caption, ActivationTable, Extremes, Summary, CalibratedSummary, ConceptSet,
    TrainingCurve, ResultRow, Rating, ExplanationScore,
)
RECORDS_BY_NAME: dict[str, type[Record]] = {r.record_name: r for r in ALL_RECORDS}
