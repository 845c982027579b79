"""`m2e extract INPUT... -o OUT`: descriptors for a collection, one output per track, resumable.

Exit status: 0 when every input track has an output, 1 when some failed (see OUT/errors.jsonl), 2 when the batch
could not start (bad arguments, unknown extractor, model unavailable), 130 when interrupted, 143 on SIGTERM (finished tracks kept either way).
A JSON summary goes to stdout; progress and messages to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys

from m2e_plugin.cli.options import (add_data_home, add_device, add_format, add_model_files, add_output,
                                    add_progress, data_home_for, model_file_options, progress_mode,
                                    window_hop_problem)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract emotion descriptors for many files into an output folder (resumable)",
        description="Extract Essentia-style emotion descriptors for files, folders (recursive, by audio extension), "
        "text files listing paths (.txt/.lst/.m3u) or a dataset. One output per track, written atomically; "
        "a re-run skips finished tracks; failures go to OUT/errors.jsonl and never stop the batch.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="audio files, folders, or .txt lists of paths; - reads standard input (track id stdin)")
    add_output(p, required=True, help="output folder")
    p.add_argument("--model", "--extractor", dest="extractor", default="lite",
                   help="model or extractor name: lite (default), music2emo, or a plugin's (see `m2e plugins`)")
    add_format(p, ("json", "yaml", "csv", "parquet"),
               help="json (default)/yaml: one file per track; csv/parquet: one table OUT/descriptors.<format>")
    p.add_argument("--flat", action="store_true", help="json/yaml with flat dotted keys (default: nested)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="parallel workers, one model each (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster (pip install 'm2e[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster address (e.g. auto, ray://host:10001); default starts a local one")
    p.add_argument("--dataset", default=None, help="extract a dataset's tracks (see `m2e datasets`), e.g. fourq")
    add_data_home(p, help="the --dataset's folder")
    p.add_argument("--dataset-version", default="default", help="the dataset index version")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N tracks of the inputs (a quick look at a dataset or a large folder)")
    add_device(p, default=None, help="compute device of the built-in extractors: auto (default; GPU when present), "
               "cpu, cuda, cuda:N")
    p.add_argument("--threshold", type=float, default=None, help="mood threshold (built-in extractors; 0.5)")
    p.add_argument("--window", type=float, default=None, help="statistics window in seconds (model default)")
    p.add_argument("--hop", type=float, default=None, help="statistics hop in seconds (model default)")
    p.add_argument("--frames", action="store_true", help="also write the per-window series")
    add_model_files(p)
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra extractor option (value parsed as JSON when it can be), repeatable")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default 1 when jobs > 1)")
    p.add_argument("--retry-failed", action="store_true", help="retry tracks listed in OUT/errors.jsonl")
    p.add_argument("--overwrite", action="store_true", help="recompute finished tracks too")
    add_progress(p)
    p.set_defaults(func=run)


def extractor_options(args: argparse.Namespace) -> dict:
    """Options for the extractor class: only those the user gave, so plugins need not accept the built-ins'."""
    options = {}
    for name in ("device", "threshold", "window", "hop"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    options.update(model_file_options(args, args.extractor))
    if args.frames:
        options["frames"] = True
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def _check_numbers(args: argparse.Namespace) -> None:
    """Reject values that used to be clamped or ignored silently (-j 0, --window 0, --threshold 7)."""
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    problem = window_hop_problem(args)
    if problem:
        raise ValueError(problem)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold is a probability between 0 and 1, got {args.threshold:g}")


def run(args: argparse.Namespace) -> int:
    from pluggy import PluginValidationError

    from m2e_plugin.batch import BatchError, OutputUnwritable, expand_inputs, run_batch, spool_streams

    if not args.inputs and not args.dataset:
        print("m2e extract: give INPUT files/folders/lists or --dataset NAME", file=sys.stderr)
        return 2
    spooled = contextlib.ExitStack()  # copies of standard input and pipes, removed when the batch ends
    try:
        if args.limit is not None and args.limit < 1:  # [:0] would do nothing, [:-1] all but the last
            raise ValueError(f"--limit must be at least 1, got {args.limit}")
        _check_numbers(args)
        options = extractor_options(args)
        data_home = data_home_for(args.data_home, args.dataset) if args.dataset else None
        if args.data_home and not args.dataset:
            raise ValueError("--data-home needs --dataset NAME")
        tracks, ignored = expand_inputs(args.inputs, dataset=args.dataset, data_home=data_home,
                                        dataset_version=args.dataset_version)
        if not tracks:
            print("m2e extract: no audio files found in the inputs", file=sys.stderr)
            return 2
        tracks = tracks[: args.limit]
        tracks = spool_streams(tracks, spooled)
        for t in tracks:
            if t.copy is not None and t.path.startswith(("/dev/fd/", "/proc/")):  # <(...): a name the shell reuses
                print(f"m2e extract: warning: {t.path} is a pipe named by its descriptor; its output {t.id!r} is "
                      "replaced by the next pipe given that descriptor (give files, or a list of paths)",
                      file=sys.stderr)
        result = run_batch(tracks, args.output, extractor=args.extractor, options=options, fmt=args.format,
                           jobs=args.jobs, backend=args.backend, ray_address=args.ray_address,
                           retry_failed=args.retry_failed, overwrite=args.overwrite, flat=args.flat,
                           progress=progress_mode(args), threads=args.threads,
                           command=" ".join(shlex.quote(a) for a in ["m2e", *sys.argv[1:]]), quiet=args.quiet,
                           ignored_files=ignored)
    except OutputUnwritable as exc:  # started, then the disk failed: the tracks written so far are kept
        print(f"m2e extract: {exc}", file=sys.stderr)
        return 1
    except (BatchError, ValueError, PluginValidationError) as exc:  # the batch cannot start (ValueError includes
        print(f"m2e extract: {exc}", file=sys.stderr)  # AudioError: standard input that is a terminal or empty)
        return 2
    finally:
        spooled.close()
    summary = result.as_dict()
    print(json.dumps(summary), flush=True)
    rate = f", {60 * result.done / result.seconds:.1f} tracks/min" if result.done and result.seconds > 0 else ""
    if not args.quiet or not result.ok:  # -q: the summary only when something failed
        print(f"m2e extract: {result.done} extracted, {result.already_done} already done, {result.failed} failed"
              f"{f', {result.previously_failed} failed before' if result.previously_failed else ''}"
              f"{f', {ignored} non-audio files ignored' if ignored else ''} in {result.seconds:.1f} s{rate}"
              f"{'; see ' + result.errors_file if result.failed or result.previously_failed else ''}",
              file=sys.stderr)
    if result.interrupted:
        print("m2e extract: interrupted; finished tracks are kept, run again to resume", file=sys.stderr)
        return 130
    return 0 if result.ok else 1
