"""The setup section: what a run used beside what the paper used, with what each difference implies.

Pure functions over plain facts gathered by the pipeline from the run (config, manifest, result
frames); the paper's side comes from :mod:`and_toolkit.experiments.paper`. Nothing here knows a
particular run: every "ours" value is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from and_toolkit.experiments.paper import (
    PAPER_MODEL_NAMES,
    PAPER_NEURONS,
    PAPER_SETUP,
    PAPER_TEST_ACCURACY,
    PaperModel,
)
from and_toolkit.report.context import SetupItem
from and_toolkit.targets.train_config import FROZEN_PRETRAINED_ARCHS, PRETRAINED_ARCHS

SAME = "same as the paper"
WEAKER_BY = 0.10
"""A target whose fold-1 accuracy is this far (fraction) below its paper model's is 'weaker'."""

IMPLIES: dict[str, str] = {
    "probing set": "the neurons are probed and the models trained on other audio: no number "
                   "below is comparable with the paper's; only the pipeline is exercised.",
    "captioner": "captions feed DB, the summaries and every open-set concept: the words found "
                 "(Figs 3, 5, 8, 9, Table 8) reflect this captioner's vocabulary.",
    "descriptor sentences": "the paper's tables and figures use the imported captions alone; "
                            "our acoustic-descriptor sentence (words such as 'loud' or "
                            "'high-pitched' measured from the signal by our template) feeds only "
                            "the sections marked '+ descriptors', which measure that template "
                            "and are never evidence for the paper's claims.",
    "summariser": "SUM and ICL read other summaries than the paper's: extractive summaries copy "
                  "caption sentences, a smaller LLM abstracts less; Table 3 and the ICL rows "
                  "reflect that.",
    "ICL LLM": "ICL accuracy (Tables 2, 7) rests on the LLM's knowledge and instruction "
               "following: a model smaller than Llama-2-13B tests the pipeline more than the "
               "method.",
    "text encoder": "the encoder sets every description-to-class similarity: DB scores shift, "
                    "and Cos is comparable with the paper's only under all-MiniLM.",
    "TAB audio-text model": "TAB needs an audio-text model: without one its rows are not run; "
                            "a model trained here on the probe set's other folds has seen "
                            "the test classes described in captions (the paper's CLAP never "
                            "saw ESC-50), so its TAB rows test the pipeline, not CLAP.",
    "K": "K sets how many top clips describe a neuron (Figs 6, 11-13, Table 6).",
    "classes": "fewer target classes make the Table 4 / Fig 10 means noisier.",
}
"""What a difference in each item implies (one line each)."""


@dataclass(frozen=True)
class TargetFacts:
    """One target of the run.

    Attributes:
        id: the target id (e.g. ``"ast"``).
        arch: its architecture (e.g. ``"ast-frozen"``).
        paper_model: the paper model it stands for.
        accuracy: fold-1 / test accuracy (fraction), ``None`` if not recorded.
        neurons: linear-layer neurons recorded, ``None`` if not recorded.
    """

    id: str
    arch: str
    paper_model: PaperModel
    accuracy: float | None = None
    neurons: int | None = None


@dataclass(frozen=True)
class RunFacts:
    """This run's side of the setup, one text per item of :data:`PAPER_SETUP` (missing items
    are shown as "not recorded")."""

    targets: tuple[TargetFacts, ...]
    items: dict[str, str]
    same: frozenset[str] = frozenset()


def percent(fraction: float | None) -> str:
    """``0.375`` -> ``"37.5 %"`` (``"not recorded"`` for ``None``)."""
    return "not recorded" if fraction is None else f"{100 * fraction:.1f} %"


def target_line(t: TargetFacts) -> str:
    """One target for the index of reports, e.g. ``"ast → AST: 37.5 % (paper 95.0 %)"``."""
    return (f"{t.id} \u2192 {t.paper_model}: {percent(t.accuracy)} "
            f"(paper {percent(PAPER_TEST_ACCURACY[t.paper_model])})")


def provenance_of(arch: str) -> str:
    """What of a target was trained here: all of it, or (packaged pretrained weights) only its
    head, or its head and top blocks (:data:`~and_toolkit.targets.train_config.PRETRAINED_ARCHS`)."""
    if arch in FROZEN_PRETRAINED_ARCHS:
        return "pretrained weights, frozen; head trained here"
    if arch in PRETRAINED_ARCHS:
        return "pretrained weights; top blocks and head trained here"
    return "trained here"


def _target_item(t: TargetFacts) -> SetupItem:
    paper_acc = PAPER_TEST_ACCURACY[t.paper_model]
    neurons = "" if t.neurons is None else f", {t.neurons:,} linear-layer neurons"
    ours = f"{t.id} ({t.arch}, {provenance_of(t.arch)}): fold-1 accuracy " \
        f"{percent(t.accuracy)}{neurons}"
    paper = (f"{PAPER_MODEL_NAMES[t.paper_model]}: {percent(paper_acc)}, "
             f"{PAPER_NEURONS[t.paper_model]:,} neurons")
    if t.accuracy is None:
        implication = "accuracy not recorded: how well the model learned the task is unknown."
    elif t.accuracy < paper_acc - WEAKER_BY:
        implication = ("a much weaker classifier than the paper's: its neurons are less "
                       "class-selective, so last-layer identification and ablation effects are "
                       "expected smaller; compare trends, not levels.")
    else:
        implication = "accuracy close to the paper model's: levels are roughly comparable."
    if t.neurons is not None and t.neurons != PAPER_NEURONS[t.paper_model]:
        implication += " Its size differs, so counts are shown as shares of its neurons."
    return SetupItem(item=f"target {t.id} (stands for {t.paper_model})", ours=ours, paper=paper,
                     implication=implication)


def setup_items(facts: RunFacts) -> tuple[SetupItem, ...]:
    """The setup section's rows: one per target, then one per item of :data:`PAPER_SETUP`.

    Args:
        facts: this run's side.

    Returns:
        The rows; an item in ``facts.same`` says "same as the paper".
    """
    rows = [_target_item(t) for t in facts.targets]
    for item, paper in PAPER_SETUP.items():
        ours = facts.items.get(item, "not recorded")
        rows.append(SetupItem(item=item, ours=ours, paper=paper,
                              implication=SAME if item in facts.same else IMPLIES[item]))
    return tuple(rows)
