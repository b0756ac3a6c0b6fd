"""The ``and-toolkit`` command: run, validate, schemas, info, index, diff, explore, layers,
dissect."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from and_toolkit.errors import AndToolkitError, DataError
from and_toolkit.stages import STAGES


def library_bars(progress: bool) -> None:
    """Make the libraries' own progress bars (transformers' weight loading and GGUF conversion,
    the Hugging Face Hub's) follow ours: off when ``progress`` is False, so logs get one line per
    stage. Call it before the pipeline is imported: ``TQDM_DISABLE`` is read when tqdm is
    imported (it also reaches processes started from here, as ``HF_HUB_DISABLE_PROGRESS_BARS``
    does); libraries already imported are switched off directly."""
    if progress:
        return
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _cmd_run(args: argparse.Namespace) -> int:
    # progress bars with an ETA on a terminal; one line per stage in logs
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    library_bars(progress)
    from and_toolkit.config import load_config
    from and_toolkit.pipeline import publish_check, publish_run, run_pipeline

    cfg = load_config(args.config)
    if args.publish is not None:
        publish_check(cfg, args.stage)
    run = run_pipeline(cfg, run_dir=args.run_dir, only=args.stage, force=args.force,
                       progress=progress)
    print(f"run complete: {run.root}")
    if run.report_path.is_file():
        print(f"report: {run.report_path}")
    if args.publish is not None:
        published = publish_run(cfg, run, args.publish)
        print(f"published: {published.page} ({len(published.data)} result frames in "
              f"{published.page.parent / 'data'}; index: {published.index})")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from and_toolkit.validation import validate_path

    problems = validate_path(Path(args.path))
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{args.path}: ok")
    return 0


def _cmd_schemas(args: argparse.Namespace) -> int:
    from and_toolkit.schemas import stale_schemas, write_schemas

    if args.check:
        stale = stale_schemas(args.out)
        for name in stale:
            print(f"stale: {Path(args.out) / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(args.out):
        print(path)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from and_toolkit.validation import info_text, run_info

    info = run_info(Path(args.run))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(info_text(info))
    return 0


def _cmd_convert_whisper(args: argparse.Namespace) -> int:
    from and_toolkit.targets.pretrained.whisper import convert_whisper

    print(convert_whisper(Path(args.out_dir)))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from and_toolkit.report.index import write_reports_index

    print(write_reports_index(Path(args.reports)))
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from and_toolkit.compare.api import diff
    from and_toolkit.compare.render import render

    try:
        only = [x for part in args.only for x in part.split(",") if x] if args.only else None
        report = diff(args.run_a, args.run_b, tolerance=args.tolerance, only=only)
    except AndToolkitError as exc:  # one line: the first of the message (e.g. not offending rows)
        lines = str(exc).strip().splitlines()
        if len(lines) > 1:
            raise DataError(f"{lines[0]} (and-toolkit validate shows the details)") from None
        raise
    text = render(report, args.format, top=args.top)
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            Path(args.output).write_text(text, "utf-8")
        except OSError as exc:
            raise DataError(f"{args.output}: cannot write the report: {exc.strerror}") from None
        print(f"{report.summary_line()} (report: {args.output})")
    return report.exit_code


def _cmd_explore(args: argparse.Namespace) -> int:
    from and_toolkit.explore.serve import serve

    serve(args.run, host=args.host, port=args.port)
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from and_toolkit.own_model import layer_table, layer_table_text

    try:
        rows = layer_table(args.model, online=args.online, include=args.include,
                           pooling=args.pooling)
    except ValueError as exc:  # an include pattern that matches nothing
        raise DataError(str(exc)) from None
    sys.stdout.write(layer_table_text(rows))
    return 0


def _cmd_dissect(args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    library_bars(progress)
    from and_toolkit.own_model import dissect

    try:
        run = dissect(args.model, args.probe, labels=args.labels, captions=args.captions,
                      concepts=args.concepts, captioner=args.captioner, run_dir=args.run_dir,
                      name=args.name, online=args.online, include=args.include, k=args.k,
                      drop_unlisted=args.drop_unlisted, force=args.force, progress=progress)
    except ValueError as exc:  # an include pattern that matches nothing
        raise DataError(str(exc)) from None
    print(f"run complete: {run.root} (and-toolkit info {run.root})")
    return 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is out of range (1-65535)")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    from and_toolkit.explore.serve import DEFAULT_HOST, DEFAULT_PORT  # no torch, no uvicorn

    p = argparse.ArgumentParser(prog="and-toolkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the stages a TOML config names (resumes)")
    r.add_argument("config", help="run configuration (TOML)")
    r.add_argument("--run-dir", default=None, help="override the run directory")
    r.add_argument("--publish", default=None, metavar="DIR",
                   help="also publish the report to DIR/<run name>/ (page, summary.json, "
                   "data/ with every result frame) and rewrite DIR/index.html; without it "
                   "the report stays in the run directory")
    r.add_argument("--stage", action="append", default=None, choices=STAGES, metavar="STAGE",
                   help=f"run only this stage (repeatable): {', '.join(STAGES)}")
    r.add_argument("--force", action="store_true", help="recompute stages already done")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on a terminal only)")
    r.set_defaults(func=_cmd_run)
    v = sub.add_parser("validate", help="check a record file or a run; report every problem")
    v.add_argument("path")
    v.set_defaults(func=_cmd_validate)
    s = sub.add_parser("schemas", help="write JSON Schemas of every record")
    s.add_argument("--out", default="schemas")
    s.add_argument("--check", action="store_true", help="fail if committed schemas are stale")
    s.set_defaults(func=_cmd_schemas)
    i = sub.add_parser("info", help="what a run holds: counts, stages, provenance")
    i.add_argument("run")
    i.add_argument("--json", action="store_true", help="everything as JSON")
    i.set_defaults(func=_cmd_info)
    x = sub.add_parser("index", help="write reports/index.html listing every report")
    x.add_argument("reports", nargs="?", default="reports")
    x.set_defaults(func=_cmd_index)
    d = sub.add_parser(
        "diff", help="compare two runs record by record (exit 0 same, 1 changed, 2 bad input)")
    d.add_argument("run_a", metavar="RUN_A", help="the run before")
    d.add_argument("run_b", metavar="RUN_B", help="the run after")
    d.add_argument("--format", choices=["text", "markdown", "json", "html"], default="text")
    d.add_argument("--output", default=None, help="write the report here (default: stdout)")
    d.add_argument("--tolerance", default=None, metavar="FILE|PRESET",
                   help="strict, default, meaning, or a TOML / JSON file of Tolerance fields")
    d.add_argument("--only", action="append", default=None, metavar="PART[,PART]",
                   help="compare only these parts: probe, extremes, summaries, calibrated, "
                   "open, closed, results (repeatable)")
    d.add_argument("--top", type=_non_negative, default=20, metavar="N",
                   help="most-changed neurons listed (default 20)")
    d.set_defaults(func=_cmd_diff)
    e = sub.add_parser("explore", help="serve a local web app over a run: search neurons, "
                       "listen to their clips, rate their descriptions (Table 3)")
    e.add_argument("run", metavar="RUN", help="run directory")
    e.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}; others print a warning)")
    e.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port, 1-65535 (default {DEFAULT_PORT})")
    e.set_defaults(func=_cmd_explore)
    ly = sub.add_parser("layers", help="list the recordable modules of your model (shapes, "
                        "pooling, neuron counts from one dummy forward pass)")
    ly.add_argument("--model", required=True, metavar="DIR|module:function")
    ly.add_argument("--include", action="append", default=None, metavar="PATTERN",
                    help="fnmatch pattern on module paths (repeatable)")
    ly.add_argument("--pooling", choices=["mean", "max", "cls", "first"], default="mean")
    ly.add_argument("--online", action="store_true", help="allow a hub id / downloads")
    ly.set_defaults(func=_cmd_layers)
    ds = sub.add_parser("dissect", help="dissect your own model on a folder of clips (record "
                        "-> extremes -> captions -> summaries -> calibrate -> open -> closed "
                        "-> score)")
    ds.add_argument("--model", required=True, metavar="DIR|module:function")
    ds.add_argument("--probe", required=True, metavar="FOLDER", help="folder of audio clips")
    ds.add_argument("--labels", default=None, metavar="CSV",
                    help="filename,label (default: FOLDER/labels.csv if present); every audio "
                    "file of FOLDER needs a row")
    ds.add_argument("--drop-unlisted", action="store_true",
                    help="leave out the audio files the labels CSV does not list (reported in "
                    "and-toolkit info) instead of refusing them")
    ds.add_argument("--captions", default=None, metavar="CSV", help="filename,caption")
    ds.add_argument("--concepts", default=None, metavar="TXT", help="one concept per line")
    ds.add_argument("--captioner", default=None, metavar="DIR",
                    help="without --captions: a local transformers audio LM captions the clips")
    ds.add_argument("--run-dir", default=None, metavar="RUN")
    ds.add_argument("--name", default=None, help="run name (default dissect-<model>)")
    ds.add_argument("--include", action="append", default=None, metavar="PATTERN",
                    help="record only modules matching (repeatable)")
    ds.add_argument("--k", type=_positive, default=None, metavar="K",
                    help="top-K / bottom-K clips per neuron (the run config's record.k and "
                    "its default; at most the number of clips)")
    ds.add_argument("--online", action="store_true", help="allow a hub id / downloads")
    ds.add_argument("--force", action="store_true",
                    help="recompute every stage, even those up to date (a stage re-runs anyway "
                    "when its inputs changed: the model's files, the clips, the CSVs)")
    ds.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    ds.set_defaults(func=_cmd_dissect)
    w = sub.add_parser("convert-whisper", help="write the packaged Whisper base (CTranslate2, "
                       "sha256-pinned) as a transformers directory")
    w.add_argument("out_dir", help="output directory (config, safetensors, feature-extractor "
                   "config, tokenizer)")
    w.set_defaults(func=_cmd_convert_whisper)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point. Bad input exits 2 with a one-paragraph message, not a traceback."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AndToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
