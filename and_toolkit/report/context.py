"""Typed inputs of the report besides the result frames: provenance, findings, extra tables.

Everything here is a frozen pydantic model (``extra="forbid"``). Text fields are untrusted (they
may hold captions or LLM output) and are always rendered escaped.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Verdict = Literal["holds", "does not hold", "inconclusive", "partially tested", "not run"]
"""How a paper claim fared in this run: ``inconclusive`` = the difference lies within the seed
or class spread (or too few classes were tested); ``partially tested`` = a method or figure the
claim needs did not run and the tested part holds."""
VERDICTS: tuple[str, ...] = ("holds", "does not hold", "inconclusive", "partially tested",
                             "not run")
"""Every verdict, in display order (tiles and summaries count them in this order)."""

CellValue = str | int | float | bool | None | list[str]
"""A cell of an extra table: scalar text / number, or a list of strings (rendered as a list)."""

_SECTION_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def check_section_id(value: str, field: str) -> str:
    """Return ``value`` if it is a valid section id (lowercase letters, digits, ``_``).

    Args:
        value: the candidate id, e.g. ``"table6"``.
        field: the field name for the error message.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: naming ``field`` when the id has another form.
    """
    if not _SECTION_ID.fullmatch(value):
        raise ValueError(f"{field}: {value!r} is not a section id (expected [a-z][a-z0-9_]*)")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provenance(_Frozen):
    """Where every number of a run comes from.

    Attributes:
        config: the run configuration (JSON-like values; rendered as sorted JSON).
        backends: backend role -> backend id (e.g. ``"summarizer" -> "llama-2-13b@sha"``).
        versions: package -> version.
        data_hashes: input name -> content hash (e.g. ``"probe" -> sha256``).
    """

    config: dict[str, Any] = Field(default_factory=dict)
    backends: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    data_hashes: dict[str, str] = Field(default_factory=dict)


class Finding(_Frozen):
    """One claim of the paper and whether this run supports it.

    Attributes:
        claim: the claim in one sentence (untrusted text).
        verdict: see :data:`Verdict`.
        evidence: the numbers or reasoning behind the verdict (untrusted text).
        section: optional id of the report section holding the evidence (a link target).
    """

    claim: str = Field(min_length=1)
    verdict: Verdict
    evidence: str = ""
    section: str | None = None

    @field_validator("section")
    @classmethod
    def _section(cls, v: str | None) -> str | None:
        return None if v is None else check_section_id(v, "Finding.section")


class StageTime(_Frozen):
    """One row of the setup section's timing table.

    Attributes:
        stage: the stage (``"record"``), a target's training (``"targets · ast training"``) or
            ``"total"``.
        wall_s: wall-clock seconds (``None``: not recorded).
        cpu_s: process CPU seconds, all threads (``None``: not recorded).
        peak_rss_mib: sampled peak resident memory in MiB (``None``: not recorded).
        note: what the row's figures cover (e.g. weights from the cache).
    """

    stage: str = Field(min_length=1)
    wall_s: float | None = Field(None, ge=0)
    cpu_s: float | None = Field(None, ge=0)
    peak_rss_mib: float | None = Field(None, ge=0)
    note: str = ""


class SetupItem(_Frozen):
    """One line of the setup section: what this run used beside what the paper used.

    Attributes:
        item: what is compared (e.g. ``"captioner"``, ``"target ast"``).
        ours: this run's choice, with numbers where they matter (e.g. fold-1 accuracy).
        paper: the paper's choice.
        implication: one sentence on what the difference implies for the results
            ("same as the paper" when there is none).
    """

    item: str = Field(min_length=1)
    ours: str
    paper: str
    implication: str = ""


class ExtraTable(_Frozen):
    """A free-form table (e.g. Table 6's qualitative neuron descriptions).

    Attributes:
        title: heading of the table.
        columns: column names, in display order.
        rows: one dict per row, keyed by column name (every key must be a column; a missing key
            renders as an empty cell). Lists of strings render as bullet lists.
        caption: optional text under the title.
    """

    title: str
    columns: tuple[str, ...] = Field(min_length=1)
    rows: tuple[dict[str, CellValue], ...] = ()
    caption: str = ""

    @model_validator(mode="after")
    def _keys(self) -> ExtraTable:
        known = set(self.columns)
        if len(known) != len(self.columns):
            raise ValueError(f"ExtraTable {self.title!r}: duplicate column names {self.columns}")
        for i, row in enumerate(self.rows):
            unknown = sorted(set(row) - known)
            if unknown:
                raise ValueError(
                    f"ExtraTable {self.title!r}: row {i} has keys {unknown} that are not columns "
                    f"{list(self.columns)}")
        return self

    @classmethod
    def from_rows(cls, title: str, rows: list[dict[str, CellValue]],
                  caption: str = "") -> ExtraTable:
        """Build a table whose columns are the rows' keys in first-seen order.

        Args:
            title: heading of the table.
            rows: the rows; must not be empty.
            caption: optional caption.

        Returns:
            The table.

        Raises:
            ValueError: if ``rows`` is empty (no columns can be derived).
        """
        if not rows:
            raise ValueError(
                f"ExtraTable.from_rows {title!r}: rows is empty; pass columns explicitly")
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        return cls(title=title, columns=tuple(columns), rows=tuple(rows), caption=caption)


class ReportContext(_Frozen):
    """Everything a report shows besides the result frames.

    Attributes:
        run_name: the run's name (also its directory name).
        title: the page title.
        provenance: config, backends, versions and data hashes.
        findings: the paper's claims with verdicts, in display order.
        extra_tables: section id -> extra tables rendered inside that section (ids that are not
            a paper section get their own "Additional tables" section).
        notes: free-text notes shown at the top of the report.
        setup: what was run beside what the paper ran (the first section of the page).
        timings: where the run's time went (the setup section's timing table; empty: none
            recorded).
        not_graded: when non-empty, the run grades none of the paper's claims and this is why
            (e.g. ``"synthetic data"``): every verdict tile and caption says "not graded".
    """

    run_name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    provenance: Provenance = Field(default_factory=Provenance)
    findings: tuple[Finding, ...] = ()
    extra_tables: dict[str, tuple[ExtraTable, ...]] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()
    setup: tuple[SetupItem, ...] = ()
    not_graded: str = ""
    timings: tuple[StageTime, ...] = ()

    @field_validator("extra_tables")
    @classmethod
    def _extra_ids(cls, v: dict[str, tuple[ExtraTable, ...]]) -> dict[str, tuple[ExtraTable, ...]]:
        for key in v:
            check_section_id(key, "ReportContext.extra_tables")
        return v


class IndexEntry(_Frozen):
    """One run listed in ``reports/index.html``.

    Attributes:
        name: run name.
        path: path of the run's report relative to the index (no scheme, not absolute).
        summary: one line of text (untrusted): sections with results and the verdicts.
        models: the targets with their accuracy, e.g. ``"ast (AST): 37.5 %"`` (untrusted).
    """

    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    summary: str = ""
    models: tuple[str, ...] = ()

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", v)
        if v.startswith(("/", "\\")) or scheme or ".." in v.replace("\\", "/").split("/"):
            raise ValueError(
                f"IndexEntry.path: {v!r} must be a relative path inside the reports folder "
                "(no scheme, no leading '/', no '..')")
        return v
