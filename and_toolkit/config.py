"""Run configuration: a TOML file validated by pydantic (unknown keys are errors).

Every stage takes its own typed section, so no option can be silently ignored (the authors'
``--mutual_info_threshold`` never reached its function).
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from and_toolkit.dissect.scoring import DEFAULT_Q
from and_toolkit.errors import ConfigError
from and_toolkit.execution import DistributedStage as DistributedStage
from and_toolkit.execution import ExecutionSection as ExecutionSection
from and_toolkit.execution import StageResources as StageResources
from and_toolkit.probe.folder_config import FolderProbeConfig
from and_toolkit.recording.hook_defaults import DEFAULT_EXCLUDE, DEFAULT_POOLING, PoolingName
from and_toolkit.stages import STAGES, Stage
from and_toolkit.targets.audio_text_config import AudioTextConfig
from and_toolkit.targets.train_config import override_problems

PaperModel = Literal["AST", "BEATs-finetuned", "BEATs-frozen"]
PAPER_MODEL_BY_ARCH: dict[str, PaperModel] = {
    "ast": "AST", "ast-frozen": "BEATs-frozen", "cnn": "BEATs-finetuned",
    "yamnet-frozen": "AST", "yamnet": "AST", "whisper-frozen": "BEATs-frozen"}
"""Default paper model of each target architecture (the CNN is the closest supervised analog
of the fine-tuned BEATs; the frozen random-encoder AST stands for the frozen BEATs; YAMNet,
supervised on AudioSet, for the AudioSet-pretrained AST; the frozen Whisper encoder, weakly
supervised on speech, for the frozen self-supervised BEATs)."""
PRETRAINING_BY_ARCH: dict[str, str] = {
    "yamnet-frozen": "YAMNet, supervised on AudioSet, frozen; linear head trained here",
    "yamnet": "YAMNet, supervised on AudioSet, fine-tuned here",  # + which blocks: report
    "whisper-frozen": "Whisper-base encoder, weakly supervised on speech, frozen; linear head "
                      "trained here"}
"""How each pretrained architecture was pretrained (archs trained here from scratch: absent)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse(problems: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError of ``(location, message, input)`` problems, each at its own dotted
    location (relative to the model whose validator raises it; pydantic prefixes the outer
    ones), so a problem that only several fields together show still names its field."""
    return ValidationError.from_exception_data("RunConfig", [InitErrorDetails(
        type=PydanticCustomError("config", "{message}", {"message": msg}), loc=loc, input=value)
        for loc, msg, value in problems])


class ProbeSection(_Section):
    """Which probing set D_p to use."""

    kind: Literal["synthetic", "esc50", "folder"] = "synthetic"
    folder: str | None = Field(None, description="Audio folder (kind='folder').")
    labels_csv: str | None = Field(
        None, description="CSV of labels (filename,label), relative to the folder "
        "(kind='folder'); none: every audio file of the folder, unlabelled.")
    folder_options: dict[str, Any] = Field(
        default_factory=dict, description="More fields of and_toolkit.probe.folder_config."
        "FolderProbeConfig (filename_col, label_col, target_col, fold_col, audio_dir, "
        "audio_ext, unlisted: 'error' | 'drop' for audio files the CSV does not list); they "
        "describe the labels CSV, so a run without one refuses them.")
    max_clips: int | None = Field(None, ge=1, description="Use only the first N clips (tests).")
    per_class: int | None = Field(
        None, ge=1, description="Use at most N clips per class, spread over the folds.")
    classes: list[str] | None = Field(None, description="Use only these classes.")
    resample: bool = Field(
        True, description="Resample clips whose file rate differs from the front end's "
        "(16 kHz, targets.features.FeatureConfig.sample_rate) with a polyphase filter, recorded "
        "in the probe's provenance; false: refuse such clips (never featurize at another rate).")
    downmix: bool = Field(
        True, description="Average the channels of multi-channel files; false: refuse them.")

    @field_validator("folder_options")
    @classmethod
    def _folder_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        if "csv" in options:
            raise _refuse([(("csv",), "the labels CSV is probe.labels_csv", options["csv"])])
        FolderProbeConfig.model_validate({"dataset": "folder", **options})  # errors: named
        return options

    @model_validator(mode="after")
    def _folder_only(self) -> ProbeSection:
        if self.kind != "folder":
            given = [k for k in ("folder", "labels_csv", "folder_options") if getattr(self, k)]
            if given:
                raise _refuse([((k,), f"only for kind = 'folder', not {self.kind!r}",
                                getattr(self, k)) for k in given])
        return self


class TargetSection(_Section):
    """One target network: trained here (``arch``) or the user's own (``pretrained`` /
    ``factory``); exactly one of the three."""

    id: str = Field(description="Model id used in neuron keys, e.g. 'cnn'.")
    arch: Literal["ast", "ast-frozen", "cnn", "yamnet-frozen", "yamnet", "whisper-frozen"] | None \
        = Field(None, description="Trained here: ast, ast-frozen, cnn; from packaged pretrained "
                "weights: yamnet-frozen (frozen YAMNet + linear head), yamnet (fine-tuned), "
                "whisper-frozen (frozen Whisper-base encoder + linear head).")
    pretrained: str | None = Field(
        None, description="A transformers model directory (config.json, weights, "
        "preprocessor_config.json): AST, wav2vec2, HuBERT, Whisper (encoder), CLAP (audio "
        "tower). Read offline; a hub id only with online = true.")
    factory: str | None = Field(
        None, description="'package.module:function' returning (torch.nn.Module, preprocess); "
        "preprocess(waveforms) -> model inputs, with preprocess.sample_rate in Hz.")
    online: bool = Field(False, description="pretrained: allow a hub id and downloads.")
    epochs: int | None = Field(None, ge=1, description="Override the default epoch count.")
    seed: int = 0
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of and_toolkit.targets.TrainConfig to override (validated there).")
    paper_model: PaperModel | None = Field(
        None, description="The paper's model this target stands for (its numbers go beside "
        "ours). Default by arch: ast -> AST, ast-frozen -> BEATs-frozen, cnn -> "
        "BEATs-finetuned (the closest supervised analog), yamnet(-frozen) -> AST, "
        "whisper-frozen -> BEATs-frozen.")

    @model_validator(mode="after")
    def _one_source(self) -> TargetSection:
        given = [k for k in ("arch", "pretrained", "factory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"target {self.id!r}: give exactly one of arch, pretrained, factory "
                             f"(got {given or 'none'})")
        problems = [((k,), f"target {self.id!r} is a user's model ({given[0]}), not trained "
                      "here: drop it", getattr(self, k))
                    for k in ("epochs", "overrides") if self.external and getattr(self, k)]
        if self.online and self.pretrained is None:
            problems.append((("online",), f"only for pretrained (a hub id), not {given[0]}",
                             True))
        if problems:
            raise _refuse(problems)
        return self

    @property
    def external(self) -> bool:
        """True for a user's model (``pretrained`` / ``factory``), not trained here."""
        return self.arch is None

    @property
    def paper_model_id(self) -> PaperModel:
        """The paper model this target stands for: ``paper_model`` or the arch's default.

        Raises:
            ConfigError: a user's model without ``paper_model`` (it stands for none).
        """
        if self.paper_model is not None:
            return self.paper_model
        if self.arch is None:
            raise ConfigError(f"target {self.id!r}: a user's model stands for no paper model; "
                              "paper experiments need a target trained here (arch)")
        return PAPER_MODEL_BY_ARCH[self.arch]

    @property
    def pretraining(self) -> str | None:
        """How the target's network was pretrained, None when trained here from scratch."""
        return PRETRAINING_BY_ARCH.get(self.arch) if self.arch else None


class FeatureSection(_Section):
    """Log-mel features shared by every target."""

    num_mel_bins: int = Field(64, ge=16)
    max_length: int = Field(512, ge=16, description="Frames (10 ms hop).")


class RecordSection(_Section):
    """Activation recording and top/bottom-K extraction."""

    pooling: PoolingName = DEFAULT_POOLING
    include: list[str] | None = Field(
        None, description="fnmatch patterns on module paths; default: every Linear / Conv2d.")
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE),
        description="fnmatch patterns to drop; default: attention q/k/v and the patch embedding "
        "(the paper records o_proj + fc1 + fc2 + classifier).")
    k: int = Field(5, ge=1, description="Top-K / bottom-K clips per neuron.")
    extra_k: list[int] = Field(default_factory=list, description="More K for Figs 11-13.")
    batch_size: int = Field(32, ge=1)

    def check_clips(self, n_clips: int, source: str) -> None:
        """Raises ConfigError (naming the field) when K or an extra K exceeds the probe's
        clips: the probe stage checks it, before anything is recorded."""
        over = [(f, k) for f, ks in (("record.k", [self.k]), ("record.extra_k", self.extra_k))
                for k in ks if k > n_clips]
        if over:
            raise ConfigError(f"{over[0][0]}: K={over[0][1]} exceeds the {n_clips} clips of the "
                              f"probe set ({source}): each neuron's top-K and bottom-K are K of "
                              "its clips; lower it (and-toolkit dissect: --k) or add clips")


class CaptionSection(_Section):
    """Where clip captions come from."""

    source: Literal["file", "synthetic", "descriptors", "captioner"] = Field(
        "synthetic", description="'file' (captions.file), 'synthetic' (the synthetic set's), "
        "'captioner' (an audio LM through transformers from captions.captioner_path), or "
        "'descriptors': no captioner, each clip's acoustic-descriptor sentence alone (a "
        "template of ours: `info` warns that the descriptions measure it, not the network).")
    captioner_path: str | None = Field(
        None, description="Local directory of a transformers audio LM (source='captioner').")
    file: str | None = Field(None, description="Caption file, relative to $AND_DATA_DIR.")
    captioner_id: str = "imported"
    descriptors: bool = Field(True, description="Append the acoustic-descriptor sentence.")
    clean: bool = Field(True, description="Repeated-substring cleaning (reference §4).")


class SummarySection(_Section):
    """Summaries S_h / S_l."""

    summarizer: Literal["extractive", "llm"] = "extractive"
    llm: str = Field("smollm2", description="LLM backend id when summarizer='llm'.")


class CalibrateSection(_Section):
    """Module B."""

    rule: Literal["paper", "reference"] = "paper"
    threshold: float | None = Field(None, description="Default 0.7 (paper) / 0.5 (reference).")
    encoder: Literal["minilm", "hashing"] = "minilm"


class OpenSection(_Section):
    """Module C."""

    adjective_filter: Literal["lexicon", "llm"] = "lexicon"
    llm: str = "smollm2"
    include_vbn: bool = True


class ClosedSection(_Section):
    """Module A."""

    methods: list[Literal["DB", "TAB", "ICL"]] = Field(
        default_factory=lambda: ["DB", "TAB", "ICL"])  # type: ignore[arg-type]
    encoder: Literal["minilm", "hashing", "clip"] = "minilm"
    db_evidence: Literal["softmax100", "cosine"] = "softmax100"
    population: Literal["per_layer", "per_neuron"] = "per_layer"
    icl_llm: str = "smollm2"
    icl_lookup_drafts: int = Field(
        0, ge=0, le=16, description="Prompt-lookup speculative decoding for ICL's greedy "
        "answers (transformers backends): up to N draft tokens copied from the prompt, checked "
        "in one forward pass (0: off). Outputs matched plain decoding on every prompt measured "
        "(benchmarks/results/llm_prefix.json: 2.59x ICL throughput at 4) but are not "
        "guaranteed bit-identical in float32; the backend id (and so every cached answer) "
        "names it.")
    icl_layers: Literal["classifier", "all"] = "classifier"
    clap_path: str | None = Field(
        None, description="Local CLAP directory for TAB (tab_model = 'clap'): config.json, "
        "model.safetensors (or pytorch_model.bin), preprocessor_config.json and the tokenizer "
        "files (vocab.json, merges.txt, tokenizer_config.json / tokenizer.json).")
    tab_model: Literal["clap", "trained"] = Field(
        "clap", description="TAB's audio-text model: 'clap' (the paper's; weights from "
        "clap_path) or 'trained' (a small CNN + frozen-MiniLM model trained here on the "
        "captions of every fold but the test fold, targets/audio_text.py).")
    audio_text: AudioTextConfig = Field(
        default_factory=AudioTextConfig,
        description="Training of the tab_model = 'trained' model (defaults: AudioTextConfig).")

    concepts: list[str] | None = Field(
        None, description="The concept set D_c (default: the probe's label names).")
    concepts_from: Literal["labels", "open"] = Field(
        "labels", description="Without concepts: the label names, or 'open': the adjectives "
        "Module C kept (the open-set vocabulary, for unlabelled probes).")

    @model_validator(mode="after")
    def _tab_model(self) -> ClosedSection:
        if self.tab_model == "trained" and self.clap_path:
            raise ValueError("clap_path: set, but tab_model = 'trained' does not use CLAP; "
                             "drop one of them")
        return self


class ScoreSection(_Section):
    """Scoring every description on held-out clips (``dissect/scoring.py``, issue 15)."""

    q: float = Field(DEFAULT_Q, gt=0, lt=1, description="Share of each neuron's held-out clips "
                     "counted as its top activations (the AUC's positives).")
    seed: int = Field(0, description="Seed of the null's shuffle of descriptions per layer.")
    encoder: Literal["minilm", "hashing", "clip"] = Field(
        "minilm", description="Text encoder of description / caption similarity.")
    descriptors: bool = Field(
        True, description="Also score the labelled variant with descriptor sentences in the "
        "captions and descriptions (when the run has it).")


class ExperimentSection(_Section):
    """Which experiments to run (default: all that the run's records allow)."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    seeds: list[int] = Field(default_factory=lambda: [20, 202, 2024])
    annotations: str | None = Field(None, description="Human annotation CSV for Table 3.")
    table4_models: list[str] | None = Field(
        None, description="Target ids that get Table 4 / Fig 10 (default: every target).")
    fig4_models: list[str] | None = Field(
        None, description="Target ids that get Fig 4 (default: those whose paper model is AST).")
    pruning_models: list[str] | None = Field(
        None, description="Target ids that get any pruning experiment (Table 4 / Fig 10, Fig 4, "
        "the dose check; default: every target). The others get a 'not run' row naming this "
        "field in each of those results.")
    unlearning_classes: int | None = Field(
        None, ge=1, description="Unlearn a seeded subset of N classes (default: every class).")
    ocp_match: Literal["token", "lemma", "substring", "meaning"] | None = Field(
        None, description="How Table 4 / Fig 10's OCP matches an open noun to a class name: "
        "'substring' (the authors'), 'token', 'lemma' or 'meaning' (text-encoder cosine with "
        "calibrate.encoder); default: UnlearningConfig's.")
    ocp_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Minimum noun / class-name cosine of ocp_match = "
        "'meaning'; default: UnlearningConfig's.")
    unlearning_matched_count: int | None = Field(
        None, ge=1, description="Neurons every Table 4 strategy prunes per class in the "
        "count-matched run (default: per class, the minimum non-zero natural count).")
    clusters: int = Field(11, ge=2, description="K-means k of Figs 6, 11-13 and Table 8 (the "
                          "authors' 11); the elbow k is run too.")
    cluster_captions: Literal["base", "active"] = Field(
        "base", description="Captions clustered for Figs 6, 11-13: the imported ones ('base') "
        "or those with the descriptor sentence ('active', as the summaries saw them).")
    qualitative_neurons: int = Field(5, ge=1, description="Table 6 neurons per model.")
    annotation_neurons: int = Field(10, ge=1, description="Annotation-sheet neurons per block.")


class RunConfig(_Section):
    """A whole run."""

    name: str = Field(description="Run name; also the report directory name.")
    run_dir: str | None = Field(None, description="Default: runs/<name>.")
    seed: int = 0
    stages: list[Stage] = Field(default_factory=lambda: list(STAGES))  # type: ignore[arg-type]
    probe: ProbeSection = ProbeSection()
    features: FeatureSection = FeatureSection()
    targets: list[TargetSection] = Field(default_factory=list)
    record: RecordSection = RecordSection()
    captions: CaptionSection = CaptionSection()
    summaries: SummarySection = SummarySection()
    calibrate: CalibrateSection = CalibrateSection()
    open: OpenSection = OpenSection()
    closed: ClosedSection = ClosedSection()
    score: ScoreSection = ScoreSection()
    experiments: ExperimentSection = ExperimentSection()
    execution: ExecutionSection = ExecutionSection()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        """What only several sections show: each target's overrides validated against its
        TrainConfig (with the run's features), and a trained TAB needing folds."""
        f = self.features
        problems = [(("targets", i, "overrides", *loc), msg, value)
                    for i, t in enumerate(self.targets) if t.arch is not None
                    for loc, msg, value in override_problems(
                        t.arch, seed=t.seed, epochs=t.epochs, overrides=t.overrides,
                        num_mel_bins=f.num_mel_bins, max_length=f.max_length)]
        c = self.closed
        if self.trains_tab() and self.probe.kind == "folder" \
                and self.probe.folder_options.get("fold_col") is None \
                and c.audio_text.test_fold == 1:
            problems.append((("closed", "tab_model"), "'trained' trains on the clips outside "
                             "closed.audio_text.test_fold (1), but a folder probe without "
                             "probe.folder_options.fold_col has every clip in fold 1: name the "
                             "fold column, or use tab_model = 'clap' or drop TAB from "
                             "closed.methods", c.tab_model))
        if problems:
            raise _refuse(problems)
        return self

    def uses_tab(self, stages: Collection[str] | None = None) -> bool:
        """True when one of ``stages`` (default: the run's) uses TAB's audio-text model: TAB
        in the closed stage, or the score stage's audio side."""
        stages = self.stages if stages is None else stages
        return ("closed" in stages and "TAB" in self.closed.methods) or "score" in stages

    def trains_tab(self) -> bool:
        """True when a stage of the run trains TAB's audio-text model (``closed.tab_model =
        'trained'`` and :meth:`uses_tab`)."""
        return self.closed.tab_model == "trained" and self.uses_tab()


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid run configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a config mapping.

    Raises:
        ConfigError: naming the source and every offending dotted key.
    """
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run configuration.

    Raises:
        ConfigError: missing file, TOML syntax error, or invalid keys / values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file does not exist")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))
