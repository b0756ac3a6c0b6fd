"""The report's sections: one per paper table / figure, in the paper's order, with stable ids.

Each :class:`SectionSpec` says how a ResultRow frame of that experiment is drawn. The common rule:
rows with a non-null ``x`` are plotted, rows with a null ``x`` are tabulated (ours / paper /
difference). docs/report.md lists the row encoding each section expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

Kind = Literal["table", "line", "bar", "dumbbell", "distribution", "wordcloud", "qualitative"]
"""How a section draws its plotted rows (tables are drawn for every kind)."""

RESERVED_IDS: frozenset[str] = frozenset({"findings", "provenance", "notes", "toc", "additional",
                                          "summary", "top", "setup"})
"""Section ids used by the page itself; result frames may not use them."""


@dataclass(frozen=True)
class SectionSpec:
    """How one paper table / figure is rendered.

    Attributes:
        id: stable HTML id and experiment id (e.g. ``"fig4a"``).
        title: heading, e.g. ``"Figure 4a · ..."``.
        caption: what is measured, with units (shown under the heading).
        kind: the figure renderer for rows with non-null ``x``.
        x_label: x-axis label (line plots) with units.
        y_label: value-axis label with units (default: the metric's label).
        panel_by: ResultRow fields that split plotted rows into panels (the metric always does).
        index: row index of the summary table (rows with null ``x``).
        headers: display names of index columns (e.g. ``group`` -> ``method``).
        series_pair: for ``dumbbell``: the (start, end) series names.
        toc: short entry for the table of contents (default: the title).
        paper: the section reproduces a paper table / figure (False: our own check, e.g.
            the pruning sanity check; not counted as a paper section).
        explain: known reasons our numbers differ from the paper's, shown beside the result.
        absent: why the section is not run when the run has no frame for it (e.g. Fig 14).
        paper_panel: line / dumbbell plots draw the paper's values in their own panel (scales
            differ too much to share an axis).
        share_of: ``(experiment, metric)`` whose per-model value divides the plotted values
            (bars become % of that model's neurons; the paper's values use its paper value).
        mark_table_groups: dumbbell plots mark the ``group`` of the tabulated rows (the target
            class of Fig 10) on the axis.
    """

    id: str
    title: str
    caption: str
    kind: Kind
    x_label: str = ""
    y_label: str = ""
    panel_by: tuple[str, ...] = ()
    index: tuple[str, ...] = ("model", "group", "series")
    headers: Mapping[str, str] = field(default_factory=dict)
    series_pair: tuple[str, str] = ("before", "after")
    toc: str = ""
    paper: bool = True
    explain: tuple[str, ...] = ()
    absent: str = ""
    paper_panel: bool = False
    share_of: tuple[str, str] | None = None
    mark_table_groups: bool = False


ORDER: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "model": ("AST", "BEATs-finetuned", "BEATs-frozen"),
    "group": ("ICL", "Random", "TAB", "DB", "SUM", "OCP"),
    "series": ("cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi", "random", "preps",
               "verbs", "nouns", "caption_len", "adjectives", "basic_adj", "high_adj", "clear",
               "high-pitched", "high", "loud", "before", "after", "with", "without",
               "natural_count", "matched_count"),
    "metric": ("top1", "top5", "cos", "rating", "bertscore", "avg_pruned", "target_classes",
               "classes_pruned",
               "delta_a", "delta_r", "r_minus_a", "r_minus_a_se", "r_minus_a_per_100",
               "acc_before", "acc_after"),
})
"""Display-order hints (matched case- and punctuation-insensitively; unknown values follow)."""

LABELS: Mapping[str, str] = MappingProxyType({
    "top1": "top-1 (%)", "top5": "top-5 (%)", "rating": "rating (1\u20135)",
    "bertscore": "BERTScore F1", "avg_pruned": "Avg (# pruned)", "delta_a": "\u0394A (logit)",
    "delta_r": "\u0394R (logit)", "r_minus_a": "\u0394R \u2212 \u0394A (logit)",
    "r_minus_a_se": "SE of \u0394R \u2212 \u0394A over classes",
    "r_minus_a_per_100": "\u0394R \u2212 \u0394A per 100 pruned",
    "target_classes": "target classes", "classes_pruned": "classes with pruned neurons",
    "natural_count": "natural count", "matched_count": "matched count", "cos_cubed": "cos\u00b3",
    "rank_reorder": "rank reorder", "wpmi": "WPMI", "soft_wpmi": "soft-WPMI",
    "caption_len": "caption length", "basic_adj": "basic adjectives",
    "high_adj": "high-level adjectives", "accuracy": "top-1 accuracy (fraction)",
    "test_accuracy": "fold-1 accuracy (fraction)", "neurons": "neurons (count)",
    "n_neurons": "neurons (count)", "n_pruned": "neurons pruned (count)",
    "own_logit": "own-class logit", "mean_adjectives": "adjectives per neuron",
    "p_value": "p-value", "slope": "slope (per unit of the x axis)", "intercept": "intercept",
    "n_points": "points (count)", "r": "Pearson r", "pct_uninterpretable":
    "uninterpretable neurons (%)", "amplitude": "mean amplitude (full scale)",
    "mdf_hz": "median frequency (Hz)", "rms_db": "RMS level (dB)", "auc": "AUC (0\u20131)",
    "n_with": "neurons with (count)", "n_without": "neurons without (count)",
    "acc_before": "accuracy before (fraction)", "acc_after": "accuracy after (fraction)",
    "inertia": "K-means inertia", "elbow_k": "elbow k", "frequency": "frequency (count)",
    "n_captions": "captions (count)", "n_sentences": "sentences (count)",
    "n_scored": "neurons scored (count)", "median_auc": "median AUC (0\u20131)",
    "null_median_auc": "null median AUC (0\u20131)", "null_iqr_auc": "null AUC IQR",
    "pct_above_chance": "above chance (% of neurons)", "median_spearman": "median Spearman",
    "null_median_spearman": "null median Spearman",
})
"""Display labels of metric and series ids (units included); unknown ids show as they are."""

_TABLE_HEADERS = MappingProxyType({"group": "method", "series": "similarity"})
_NEURON_SHARE = ("target_accuracy", "neurons")
_ICL_TOP5 = ("ICL top-5 can be below its top-1: they come from two separate prompts (one asks "
             "for one label, the other for five), not from one ranked list.")

SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "table2", "Table 2 \u00b7 Last-layer dissection accuracy",
        "Closed-set concept identification of the classifier neurons (ESC-50): top-1 / top-5 "
        "accuracy in % and cosine similarity between the predicted and the true class name; per "
        "method the best of the five similarity functions.", "table", headers=_TABLE_HEADERS,
        toc="Last-layer accuracy",
        explain=("The similarity column names the function picked for each cell: the best of "
                 "the five by top-1 (ties by top-5), as the paper reports each method's best; "
                 "Table 7 lists all five.", _ICL_TOP5)),
    SectionSpec(
        "table7", "Table 7 \u00b7 Last-layer accuracy per similarity function",
        "ICL, TAB and DB with each of the five similarity functions (Appendix E); same metrics "
        "as Table 2.", "table", headers=_TABLE_HEADERS, toc="Accuracy per similarity",
        explain=("The paper's DB soft-WPMI row (2 / 10 / 0.23) comes from the authors' code "
                 "scoring each neuron on its own population, which makes soft-WPMI identically "
                 "0 (reference spec \u00a715 item 6); ours scores the whole layer, so this row is "
                 "expected to differ.", _ICL_TOP5)),
    SectionSpec(
        "table3", "Table 3 \u00b7 Description quality of middle-layer neurons",
        "Mean rating (1\u20135), cosine similarity and BERTScore F1 between each method's "
        "description and a reference summary, over sampled AST neurons.", "table",
        headers={"group": "method"}, toc="Middle-layer descriptions",
        explain=("Ratings collected with `and-toolkit explore` (the run's ratings.parquet) are "
                 "our own raters' ratings of this run's descriptions, not the paper's "
                 "annotators' ratings of theirs; rating_sd is the SD over neurons of each "
                 "neuron's mean rating, n_rating the neurons rated.",)),
    SectionSpec(
        "ablation_dose", "Pruning sanity check \u00b7 random ablation up to 100 %",
        "Top-1 accuracy on the test fold after zeroing a random x % of each target's hidden "
        "linear-layer / conv neurons (classifier never pruned; mean over seeds, SD in the "
        "accuracy_sd panel), through the same masks and forward hooks as Table 4 and Figure 4. "
        "The 'chance' line is the share of the most frequent test class: at 100 % no input "
        "information reaches the classifier, so accuracy must fall to it (above_chance_at_100 > 0 "
        "would mean a path around the pruned units). relative_loss_at_12 = share of the "
        "above-chance accuracy lost at 12 % (the paper's AST: 0.85). A small loss with the "
        "endpoint at chance means the robustness is the model's, not the pruning code's: "
        "candidates are redundancy from training with SpecAugment and mixup on every batch, "
        "and the residual stream, which keeps each block's unpruned outputs. Not a paper "
        "figure.",
        "line", x_label="hidden neurons ablated (%)", y_label="top-1 accuracy",
        toc="Pruning sanity check", paper=False),
    SectionSpec(
        "table4", "Table 4 \u00b7 Confidence change after neuron ablation",
        "Avg = mean number of neurons pruned per target class; \u0394A / \u0394R = mean change "
        "of the own-class raw logit on the target class / the remaining classes (fold 1); "
        "\u0394R \u2212 \u0394A = how much more the target class drops than the others (the "
        "paper's column headed \u0394A\u2212\u0394R holds this quantity). Each strategy at its "
        "natural count and at a matched count (the same number of neurons per class for every "
        "strategy, each from its own ranking); classes where a strategy prunes nothing are "
        "excluded from its means.",
        "table", headers={"group": "strategy", "series": "count"},
        toc="Ablation: confidence change"),
    SectionSpec(
        "fig10", "Figure 10 \u00b7 Confidence before and after ablating one concept",
        "Mean own-class logit per class before and after pruning the neurons associated with the "
        "target class (open-concept pruning); the largest drops are labelled red; the shaded "
        "column is the target class.", "dumbbell",
        y_label="mean own-class logit", headers={"group": "class"}, toc="Ablating one concept",
        paper_panel=True, mark_table_groups=True),
    SectionSpec(
        "fig3", "Figure 3 \u00b7 Most frequent adjectives (AST)",
        "Share of AST linear-layer neurons (%) whose open-set concepts contain each adjective "
        "(top 10).", "bar", y_label="neurons with the adjective (%)",
        toc="Top adjectives (AST)", share_of=_NEURON_SHARE),
    SectionSpec(
        "fig9", "Figure 9 \u00b7 Most frequent adjectives per model",
        "Top-20 adjectives of the open-set concepts across all linear-layer neurons, per model, "
        "as a share of that model's neurons (%): the models differ in size.",
        "bar", y_label="neurons with the adjective (%)", toc="Top adjectives per model",
        share_of=_NEURON_SHARE),
    SectionSpec(
        "fig4a", "Figure 4a \u00b7 Ablation by caption statistics",
        "Top-1 accuracy on ESC-50 fold 1 after ablating the linear-layer neurons ranked highest "
        "by each criterion (mean over seeds).", "line",
        x_label="linear-layer neurons ablated (%)", y_label="top-1 accuracy (fraction)",
        toc="Ablation by caption stats", paper_panel=True),
    SectionSpec(
        "fig4b", "Figure 4b \u00b7 Ablation by basic vs. high-level adjectives",
        "As Figure 4a, ranking neurons by the number of basic / high-level adjectives.", "line",
        x_label="linear-layer neurons ablated (%)", y_label="top-1 accuracy (fraction)",
        toc="Ablation by adjective kind", paper_panel=True),
    SectionSpec(
        "fig4c", "Figure 4c \u00b7 Ablation by single adjectives",
        "As Figure 4a, ablating neurons whose open-set concepts contain one adjective.", "line",
        x_label="linear-layer neurons ablated (%)", y_label="top-1 accuracy (fraction)",
        toc="Ablation by one adjective", paper_panel=True),
    SectionSpec(
        "fig5", "Figure 5 \u00b7 Adjectives per neuron by block",
        "Mean number of open-set adjectives per linear-layer neuron in each transformer block, "
        "at relative depth b / B (block b of B; the paper's 12 blocks at k / 12); the table "
        "holds the slopes and p-values fitted on relative depth.", "line",
        x_label="relative depth (block / number of blocks)", y_label="adjectives per neuron",
        toc="Adjectives per block"),
    SectionSpec(
        "fig6", "Figure 6 \u00b7 Uninterpretable neurons by block",
        "Percentage of neurons judged uninterpretable (polysemantic) per transformer block "
        "(\u03c4 = 4, top-K = 5). A rule no neuron can pass by construction (Algorithm 1's "
        "multiset intersection when captions have about one sentence) is tabulated with the "
        "bound that proves it, beside the sentence pool's shape, not drawn.", "line",
        x_label="transformer block", y_label="uninterpretable neurons (%)",
        toc="Uninterpretable neurons"),
    SectionSpec(
        "fig11_13", "Figures 11\u201313 \u00b7 Uninterpretable neurons for other \u03c4 and K",
        "As Figure 6 for \u03c4 \u2208 {3K/5, 4K/5, K} and K \u2208 {5, 10, 20}; one panel per "
        "setting.", "line", x_label="transformer block",
        y_label="uninterpretable neurons (%)", panel_by=("group",), toc="Other \u03c4 and K"),
    SectionSpec(
        "fig8", "Figure 8 \u00b7 Loudness and pitch of top-K clips",
        "Per neuron, the mean waveform amplitude and the median frequency (MDF) of its top-K "
        "clips, for neurons with and without 'loud' / 'high-pitched' in their open-set concepts.",
        "distribution", toc="Loudness and pitch"),
    SectionSpec(
        "table6", "Table 6 \u00b7 Example neuron descriptions",
        "Top-5 clip labels of sampled neurons with their TAB, DB and calibrated-summary "
        "descriptions. Descriptions are model output, shown verbatim.", "qualitative",
        toc="Example descriptions",
        explain=("An empty TAB or ICL cell means that method was not run for that neuron: TAB "
                 "needs an audio-text model (closed.tab_model: CLAP weights or the model "
                 "trained here), and ICL labels only the classifier layer "
                 "(closed.icl_layers = 'classifier'); see the notes at the top.",)),
    SectionSpec(
        "table8", "Table 8 \u00b7 Word clouds of the caption clusters",
        "Word frequencies of the caption sentences of each K-means cluster (Appendix G.2).",
        "wordcloud", toc="Cluster word clouds"),
    SectionSpec(
        "fig14", "Figure 14 \u00b7 Uninterpretable neurons on GTZAN",
        "As Figure 6 with GTZAN Music Genre as the probing and training set (Appendix G.4).",
        "line", x_label="transformer block", y_label="uninterpretable neurons (%)",
        panel_by=("group",), toc="GTZAN (Appendix G.4)",
        absent="the toolkit runs one probing set per run and this run's is not GTZAN; GTZAN "
               "(marsyas/gtzan) is not available offline here, so the models were not trained "
               "or probed on it."),
    SectionSpec(
        "explanation_scores", "Explanation quality · beyond the paper",
        "Beyond the paper (issue 15): does a neuron's description predict its activations on "
        "clips that did not produce it? Per neuron and description (top-1 closed concept per "
        "method × similarity, calibrated summary S_h, open concepts as one phrase), the "
        "AUC of the text encoder's description–caption similarity predicting 'clip in the "
        "neuron's top q of activations' (q = 5 % by default) over its held-out clips (every "
        "top-K / bottom-K clip of the run's K and extra K excluded), and the Spearman "
        "correlation of similarity and activation. Null: the same score with the description "
        "of another neuron of the same layer (seeded shuffle). Above chance = AUC above the "
        "95th percentile of the null AUCs of the neuron's own layer and description kind "
        "(about 5 % of null scores pass it by construction). Plotted per block (captions "
        "alone; classifier = last block + 1): median AUC of the descriptions vs. the null, "
        "and the share above chance. 'captions + descriptors' is the labelled variant with "
        "our descriptor sentences in captions and descriptions: it partly scores our template "
        "against itself. The 'audio' clip side replaces each caption by the clip's audio "
        "through TAB's audio-text model; when that model was trained here on the probe's "
        "captions (its rows' notes say so) it is not independent of the captioner, and the "
        "clips it was trained on are among those scored. No paper values exist.",
        "line", x_label="block (classifier = last block + 1)", panel_by=("group",),
        headers={"group": "description", "series": "clip side"},
        toc="Explanation quality (beyond the paper)", paper=False,
        absent="the score stage did not run (add \"score\" to the run's stages)."),
)
"""Every paper section, in the paper's order, then our own checks beyond the paper."""

SECTIONS_BY_ID: Mapping[str, SectionSpec] = MappingProxyType({s.id: s for s in SECTIONS})


DESCRIPTOR_SUFFIX = "_descriptors"
"""Experiment-id suffix of an adjective-based result computed on captions + our descriptor
sentences (the primary id holds the imported captions alone, the paper's setting)."""


def generic_spec(section_id: str) -> SectionSpec:
    """Spec for a result frame that is not a paper section.

    Args:
        section_id: the experiment id.

    Returns:
        For ``<paper id>_descriptors``: the paper section's spec, retitled as the
        captions + descriptors variant. Otherwise a table spec titled with the id.
    """
    base = section_id.removesuffix(DESCRIPTOR_SUFFIX)
    if section_id.endswith(DESCRIPTOR_SUFFIX) and base in SECTIONS_BY_ID:
        spec = SECTIONS_BY_ID[base]
        return replace(
            spec, id=section_id, title=f"{spec.title} \u00b7 captions + descriptors (variant)",
            caption=f"{spec.caption} Variant: the adjectives come from the captions extended by "
            "our acoustic-descriptor sentences (percentile rules on loudness, pitch, ...), not "
            f"from the captions alone as in {base}; our own template, never a finding.",
            toc=f"{spec.toc or spec.title} (+ descriptors)")
    return SectionSpec(section_id, f"Additional result \u00b7 {section_id}",
                       "A result frame without a paper counterpart.", "table", toc=section_id)
