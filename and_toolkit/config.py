"""Run configuration: a TOML file validated by pydantic (unknown keys are errors).

Every stage takes its own typed section, so no option can be silently ignored (the authors'
``--mutual_info_threshold`` never reached its function).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from and_toolkit.dissect.scoring import DEFAULT_Q
from and_toolkit.errors import ConfigError
from and_toolkit.recording.hook_defaults import DEFAULT_EXCLUDE, DEFAULT_POOLING, PoolingName
from and_toolkit.stages import STAGES, Stage
from and_toolkit.targets.audio_text_config import AudioTextConfig

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


class ProbeSection(_Section):
    """Which probing set D_p to use."""

    kind: Literal["synthetic", "esc50", "folder"] = "synthetic"
    folder: str | None = Field(None, description="Audio folder (kind='folder').")
    labels_csv: str | None = Field(
        None, description="CSV of labels (filename,label), relative to the folder "
        "(kind='folder'); none: every audio file of the folder, unlabelled.")
    folder_options: dict[str, Any] = Field(
        default_factory=dict, description="More fields of and_toolkit.probe.folder."
        "FolderProbeConfig (filename_col, label_col, target_col, fold_col, audio_dir, ...).")
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


DistributedStage = Literal["record", "extremes", "captions", "closed", "summaries"]
"""Stages the Ray engine distributes (every other stage runs on the local path under either
engine; see docs/scale-out.md)."""


class StageResources(_Section):
    """Ray resources of one distributed stage's workers (actors or tasks)."""

    num_cpus: float = Field(1.0, gt=0, description="CPUs per worker; an actor also runs torch "
                            "on max(1, int(num_cpus)) threads.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per worker (the record stage's actors "
                            "then run the model on CUDA: same records up to float tolerance, "
                            "not the same bytes as on CPU).")
    workers: int | None = Field(
        None, ge=1, description="Actors (record; the LLM actors of summaries and closed's ICL) "
        "or concurrent tasks; default: as many as the cluster's CPUs hold at num_cpus each.")


class ExecutionSection(_Section):
    """Where the stages run. Never part of a stage fingerprint: both engines write the same
    records (byte-identical on CPU), so switching engines re-runs nothing."""

    engine: Literal["local", "ray"] = Field(
        "local", description="'local': this process (no Ray needed); 'ray': the distributed "
        "stages run on a Ray cluster (pip install 'and-toolkit[ray]').")
    address: str | None = Field(
        None, description="Ray cluster address (e.g. 'ray://head:10001' or 'auto'); default: "
        "start a local cluster with ray.init(num_cpus=num_cpus) for this run.")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local cluster started when address is unset "
        "(default: every CPU of the machine).")
    partition_clips: int = Field(
        512, ge=1, description="Clips per record partition (rounded up to a multiple of the "
        "forward batch, so every forward pass sees the local engine's batches).")
    stages: dict[DistributedStage, StageResources] = Field(
        default_factory=dict, description="Per-stage resources; default StageResources().")
    train_workers: int | None = Field(
        None, ge=1, description="Targets trained at once, each in its own process (default: "
        "the usable cores over the training thread count measured for this machine, at most "
        "the targets to train, and only trainings estimated at a minute or more; set: every "
        "uncached target, this many at once; 1: one after another in this process). The "
        "weights do not depend on it.")

    def resources(self, stage: str) -> StageResources:
        """The resources of ``stage`` (the defaults when the config names none)."""
        return self.stages.get(stage, StageResources())  # type: ignore[call-overload]


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
