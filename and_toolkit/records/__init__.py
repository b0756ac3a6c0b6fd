"""Record models (the single source of truth) and their derived Polars / JSON schemas."""

from and_toolkit.records.base import F32, I32, Record, Vector
from and_toolkit.records.models import (
    ALL_RECORDS,
    NEURON_KEY,
    RECORDS_BY_NAME,
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    ExplanationScore,
    Extremes,
    ProbeClip,
    Rating,
    ResultRow,
    Summary,
    TrainingCurve,
)

__all__ = [
    "ALL_RECORDS", "F32", "NEURON_KEY", "I32", "RECORDS_BY_NAME", "ActivationTable", "CalibratedSummary",
    "Caption", "ConceptSet", "ExplanationScore", "Extremes", "ProbeClip", "Rating", "Record",
    "ResultRow", "Summary",
    "TrainingCurve", "Vector",
]
