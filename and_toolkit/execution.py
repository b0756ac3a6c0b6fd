"""The run configuration's ``[execution]`` section: where the stages run (the local process or
a Ray cluster) and with what resources. Pydantic only (no torch, no Ray);
:class:`~and_toolkit.config.RunConfig` embeds it and :mod:`and_toolkit.pipeline.engine` /
``ray_engine`` read it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DistributedStage", "ExecutionSection", "StageResources"]


class _ExecutionPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DistributedStage = Literal["record", "extremes", "captions", "closed", "summaries"]
"""Stages the Ray engine distributes (every other stage runs on the local path under either
engine; see docs/scale-out.md)."""


class StageResources(_ExecutionPart):
    """Ray resources of one distributed stage's workers (actors or tasks)."""

    num_cpus: float = Field(1.0, gt=0, description="CPUs per worker; an actor also runs torch "
                            "on max(1, int(num_cpus)) threads.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per worker (the record stage's actors "
                            "then run the model on CUDA: same records up to float tolerance, "
                            "not the same bytes as on CPU).")
    workers: int | None = Field(
        None, ge=1, description="Actors (record; the LLM actors of summaries and closed's ICL) "
        "or concurrent tasks; default: as many as the cluster's CPUs hold at num_cpus each.")


class ExecutionSection(_ExecutionPart):
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
