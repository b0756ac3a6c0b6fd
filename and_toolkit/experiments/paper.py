"""The AND paper's reference numbers (ICML 2024), as typed constants.

Sources: reference-spec §12 (paper tables, notebook prints and figure read-offs). Figure values
are read off the published images (±0.01); notebook values are what the authors' notebooks
printed, which sometimes differ from the paper (reference §15 item 20). Nothing here is computed.

Model ids are the paper's: ``"AST"``, ``"BEATs-finetuned"``, ``"BEATs-frozen"``. Similarity ids
are the toolkit's (``and_toolkit.dissect.similarity.SIMILARITY_NAMES``); the authors' code names
are accepted through :data:`SIMILARITY_ALIASES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

PaperModel = Literal["AST", "BEATs-finetuned", "BEATs-frozen"]
PAPER_MODELS: Final[tuple[PaperModel, ...]] = ("AST", "BEATs-finetuned", "BEATs-frozen")
SIMILARITIES: Final[tuple[str, ...]] = ("cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi")
SIMILARITY_ALIASES: Final[Mapping[str, str]] = MappingProxyType({
    "cos_similarity": "cos", "cos_similarity_cubed": "cos_cubed",
    **{s: s for s in SIMILARITIES},
})


@dataclass(frozen=True)
class LastLayerCell:
    """One Table 2 / Table 7 cell.

    Attributes:
        top1: top-1 accuracy over the 50 classifier neurons, in %.
        top5: top-5 accuracy, in %.
        cos: mean cosine between the top-1 prediction and the ground-truth class name.
    """

    top1: float
    top5: float
    cos: float


@dataclass(frozen=True)
class UnlearningCell:
    """One Table 4 cell group.

    Attributes:
        avg_pruned: mean number of pruned neurons per target class.
        delta_a: ΔA, mean change of the own-class raw logit on target-class clips.
        delta_r: ΔR, the same on the clips of the remaining classes.
        r_minus_a: ΔR − ΔA, how much more the target class drops than the others. The paper
            heads this column "ΔA−ΔR", but every one of its 12 cells equals ΔR − ΔA (AST OCP:
            ΔA −10.73, ΔR −6.83, printed +3.90); the printed value is stored here.
    """

    avg_pruned: float
    delta_a: float
    delta_r: float
    r_minus_a: float


@dataclass(frozen=True)
class HumanEvalCell:
    """One Table 3 row: mean rating (1-5), cosine and BERTScore F1 vs human summaries."""

    rating: float
    cos: float
    bertscore: float


def _ll(spec: str) -> LastLayerCell:
    top1, top5, cos = (float(v) for v in spec.split("/"))
    return LastLayerCell(top1, top5, cos)


def _table7() -> dict[tuple[PaperModel, str, str], LastLayerCell]:
    rows: dict[tuple[PaperModel, str], str] = {
        ("AST", "TAB"): "2/16/.23 92/98/.97 84/92/.91 96/100/.98 96/98/.98",
        ("AST", "DB"): "80/82/.85 100/100/1.00 86/100/.93 88/100/.95 2/10/.24",
        ("BEATs-finetuned", "TAB"): "50/80/.64 66/94/.77 52/80/.67 68/94/.77 74/92/.82",
        ("BEATs-finetuned", "DB"): "76/100/.83 74/96/.82 56/90/.71 62/94/.75 2/10/.23",
        ("BEATs-frozen", "TAB"): "14/34/.35 38/76/.56 18/48/.42 46/72/.60 42/80/.60",
        ("BEATs-frozen", "DB"): "58/82/.69 46/82/.62 36/72/.56 34/68/.53 2/10/.23",
    }
    out = {(m, meth, sim): _ll(cell) for (m, meth), cells in rows.items()
           for sim, cell in zip(SIMILARITIES, cells.split(), strict=True)}
    for model, cell in (("AST", "72/60/.83"), ("BEATs-finetuned", "52/56/.68"),
                        ("BEATs-frozen", "16/16/.37")):
        out[(model, "ICL", "")] = _ll(cell)  # type: ignore[index]
    return out


TABLE7: Final[Mapping[tuple[PaperModel, str, str], LastLayerCell]] = MappingProxyType(_table7())
"""Table 7 (Appendix E): ``(model, method, similarity) -> cell``; ICL has similarity ``""``."""

TABLE7_NOTEBOOK_AST_TAB_PAIR_COS: Final[Mapping[str, float]] = MappingProxyType(dict(zip(
    SIMILARITIES, (0.2855, 0.7838, 0.7789, 0.7932, 0.7343), strict=True)))
"""AST TAB "Cos" printed by the authors' notebook, computed on the (top-1, top-2) text pair."""

TABLE2: Final[Mapping[tuple[PaperModel, str], LastLayerCell]] = MappingProxyType({
    ("AST", "ICL"): _ll("72/60/.83"), ("AST", "TAB"): _ll("96/100/.98"),
    ("AST", "DB"): _ll("100/100/1.00"),
    ("BEATs-finetuned", "ICL"): _ll("52/56/.68"), ("BEATs-finetuned", "TAB"): _ll("74/92/.82"),
    ("BEATs-finetuned", "DB"): _ll("76/100/.83"),
    ("BEATs-frozen", "ICL"): _ll("16/16/.37"), ("BEATs-frozen", "TAB"): _ll("46/72/.60"),
    ("BEATs-frozen", "DB"): _ll("58/82/.69"),
})
"""Table 2: ``(model, method) -> best cell over the five similarity functions``."""

TABLE3: Final[Mapping[str, HumanEvalCell]] = MappingProxyType({
    "TAB": HumanEvalCell(2.73, 0.24, 0.42),
    "DB": HumanEvalCell(3.24, 0.57, 0.45),
    "SUM": HumanEvalCell(3.49, 0.72, 0.46),
})
"""Table 3 (human evaluation of 120 AST neurons): method -> rating / cos / BERTScore."""


def _table4() -> dict[tuple[PaperModel, str], UnlearningCell]:
    rows: dict[PaperModel, str] = {
        "AST": "3000 -13.52 -13.48 0.04|3317 -4.19 -4.03 0.16|3317 -7.18 -7.41 -0.23"
               "|2808 -10.73 -6.83 3.90",
        "BEATs-finetuned": "3000 -0.55 -0.55 0.00|2765 -0.50 -0.49 0.01|2765 -0.53 -0.57 -0.04"
                           "|2677 -2.00 -0.51 1.49",
        "BEATs-frozen": "3000 -0.72 -0.73 -0.01|2765 -0.42 -0.51 -0.09|2765 -0.48 -0.58 -0.10"
                        "|2906 -0.65 -0.55 0.10",
    }
    out: dict[tuple[PaperModel, str], UnlearningCell] = {}
    for model, spec in rows.items():
        for strategy, cell in zip(("Random", "TAB", "DB", "OCP"), spec.split("|"), strict=True):
            avg, da, dr, printed = (float(v) for v in cell.split())
            out[(model, strategy)] = UnlearningCell(avg, da, dr, printed)
    return out


TABLE4: Final[Mapping[tuple[PaperModel, str], UnlearningCell]] = MappingProxyType(_table4())
"""Table 4: ``(model, strategy) -> cell``; strategies Random, TAB, DB, OCP. The last printed
number of each cell is ΔR − ΔA (see :class:`UnlearningCell`)."""

TABLE4_NOTEBOOK_AST_OCP: Final[UnlearningCell] = UnlearningCell(2210.18, -9.4068, -5.2100, 4.1968)
"""Table 4 AST OCP as printed by the authors' notebook (differs from the paper, §15 item 20);
its last number is ΔR − ΔA as well."""

TABLE4_NOTEBOOK_AST_OCP_PRUNED: Final[Mapping[str, int]] = MappingProxyType({
    "dog": 2158, "chirping_birds": 4315, "vacuum_cleaner": 732, "thunderstorm": 2003,
    "door_wood_knock": 5307, "can_opening": 257, "crow": 614, "clapping": 1885,
    "fireworks": 2202, "chainsaw": 4535, "airplane": 1473, "mouse_click": 11897,
    "pouring_water": 2838, "train": 2775, "sheep": 251, "water_drops": 2651,
    "church_bells": 2484, "clock_alarm": 6132, "keyboard_typing": 2313, "wind": 1856,
    "footsteps": 384, "frog": 894, "cow": 964, "brushing_teeth": 1057, "car_horn": 2093,
    "crackling_fire": 1329, "helicopter": 4698, "drinking_sipping": 245, "rain": 1448,
    "insects": 336, "laughing": 370, "hen": 5, "engine": 5867, "breathing": 857,
    "crying_baby": 1234, "hand_saw": 636, "coughing": 983, "glass_breaking": 3883,
    "snoring": 1273, "toilet_flush": 1073, "pig": 1005, "washing_machine": 2809,
    "clock_tick": 4478, "sneezing": 248, "rooster": 1237, "sea_waves": 1027, "siren": 3639,
    "cat": 842, "door_wood_creaks": 5295, "crickets": 1622,
})
"""Per-class OCP pruned-neuron counts of the AST notebook (noun-substring matching)."""

FIG10_NOTEBOOK_AST_WATER_DROPS: Final[Mapping[str, tuple[float, float]]] = MappingProxyType({
    "toilet_flush": (-0.1, -15.6), "pouring_water": (-0.3, -13.3),
    "vacuum_cleaner": (-1.5, -14.4), "drinking_sipping": (-0.3, -10.6),
    "water_drops": (-0.8, -10.8),
})
"""Fig 10 read-offs (AST notebook, OCP, target water_drops, 2651 pruned): class -> mean
own-class logit (before, after) for the five largest drops. The paper's figure shows
BEATs-finetuned without printed numbers."""
FIG10_NOTEBOOK_AST_WATER_DROPS_PRUNED: Final[int] = 2651

FIG4_PERCENTS: Final[tuple[float, ...]] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
"""x positions (% of all linear-layer neurons ablated) of every Fig 4 curve."""
FIG4_BUDGETS_AST: Final[tuple[int, ...]] = (0, 1107, 2214, 3321, 4428, 5535, 6442)
"""Neuron counts the authors pruned at those x positions (6442 is 11.64 %, a typo for 6642)."""
FIG4_TOTAL_AST: Final[int] = 55346
"""Denominator of the Fig 4 budgets: all AST linear-layer neurons including the classifier."""


def _fig4(spec: Mapping[str, str]) -> Mapping[str, tuple[float, ...]]:
    out = {k: tuple(float(v) for v in s.split("/")) for k, s in spec.items()}
    if any(len(v) != len(FIG4_PERCENTS) for v in out.values()):
        raise ValueError("Fig 4 curves must have one value per FIG4_PERCENTS entry")
    return MappingProxyType(out)


FIG4A: Final[Mapping[str, tuple[float, ...]]] = _fig4({
    "random": ".95/.877/.826/.680/.487/.229/.160",
    "preps": ".95/.864/.829/.708/.52/.262/.20",
    "verbs": ".95/.938/.80/.675/.51/.36/.22",
    "nouns": ".95/.913/.783/.618/.424/.319/.15",
    "caption_len": ".95/.925/.82/.68/.54/.33/.19",
    "adjectives": ".95/.925/.815/.648/.512/.337/.16",
})
"""Fig 4a (AST): criterion -> top-1 accuracy (fraction) at :data:`FIG4_PERCENTS`."""
FIG4B: Final[Mapping[str, tuple[float, ...]]] = _fig4({
    "random": ".95/.877/.826/.680/.487/.229/.160",
    "basic_adj": ".95/.907/.788/.642/.424/.222/.163",
    "high_adj": ".95/.913/.813/.668/.515/.358/.182",
})
"""Fig 4b (AST); its random curve is the one of Fig 4a."""
FIG4C: Final[Mapping[str, tuple[float, ...]]] = _fig4({
    "clear": ".95/.930/.912/.89/.835/.778/.667",
    "high-pitched": ".95/.915/.90/.848/.756/.541/.392",
    "high": ".95/.925/.908/.88/.822/.473/.418",
    "loud": ".95/.92/.905/.868/.79/.644/.568",
})
"""Fig 4c (AST): adjective -> accuracy; the curve labelled 'high' stands for 'high-quality'."""

FIG5: Final[Mapping[PaperModel, tuple[float, ...]]] = MappingProxyType({
    "AST": (3.44, 3.76, 3.50, 3.46, 3.55, 3.52, 3.44, 3.04, 3.20, 3.30, 3.06, 2.95),
    "BEATs-finetuned": (3.25, 3.24, 3.26, 3.22, 3.19, 3.15, 3.21, 3.17, 3.11, 3.01, 2.99, 3.08),
    "BEATs-frozen": (2.63, 2.66, 2.70, 2.70, 2.67, 2.64, 2.62, 2.64, 2.73, 2.65, 2.68, 2.69),
})
"""Fig 5: mean |C_open-set| per linear-layer neuron for blocks 1..12."""

FIG6: Final[Mapping[PaperModel, tuple[float, ...]]] = MappingProxyType({
    "AST": (42, 53, 56, 55, 53, 51, 34, 37, 13, 10, 13, 13),
    "BEATs-finetuned": (72, 69, 71, 68, 64, 63, 60, 51, 46, 42, 38, 38),
    "BEATs-frozen": (70, 71, 70, 68, 67, 65, 67, 66, 67, 68, 67, 68),
})
"""Fig 6 (τ = 4, K = 5): % uninterpretable neurons for blocks 1..12."""

PAPER_TEST_ACCURACY: Final[Mapping[PaperModel, float]] = MappingProxyType({
    "AST": 0.95, "BEATs-finetuned": 0.8975, "BEATs-frozen": 0.8475})
"""Fold-1 top-1 accuracy (fraction) of the paper's target models (reference spec §0)."""
PAPER_MODEL_NAMES: Final[Mapping[PaperModel, str]] = MappingProxyType({
    "AST": "AST (Evan-Lin/ast-esc50: 12 blocks, d=768)",
    "BEATs-finetuned": "BEATs fine-tuned on ESC-50 (12 layers, d=768)",
    "BEATs-frozen": "BEATs frozen, linear classifier trained (12 layers, d=768)"})
"""What each paper model is (reference spec §0)."""
PAPER_NEURONS: Final[Mapping[PaperModel, int]] = MappingProxyType({
    "AST": 55346, "BEATs-finetuned": 46130, "BEATs-frozen": 46130})
"""Linear-layer neurons incl. the 50-way classifier (reference spec §0)."""
PAPER_SETUP: Final[Mapping[str, str]] = MappingProxyType({
    "probing set": "ESC-50, all 2,000 clips (50 classes, 5 folds); accuracy on fold 1",
    "captioner": "SALMONN-13B (\"Please describe the audio in detail.\")",
    "descriptor sentences": "no: captions only",
    "summariser": "Llama-2-13b-chat (abstractive summaries)",
    "ICL LLM": "Llama-2-13b-chat",
    "text encoder": "CLIP ViT-B/32 text (Module A); all-MiniLM-L12-v2 (Cos metric, calibration)",
    "TAB audio-text model": "LAION-CLAP 630k-audioset-best",
    "K": "5 top clips (10 and 20 in Figs 12-13)",
    "classes": "all 50 classes; Table 4 / Fig 10 over all 50 target classes",
})
"""The paper's setup, item by item (reference spec §0, Appendix A), for the report's setup
section."""
