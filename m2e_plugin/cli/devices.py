"""`m2e devices`: list audio input devices (for `m2e stream --input-device`). JSON lines on stdout, or a table."""

from __future__ import annotations

import argparse
import json
import sys

from m2e_plugin.cli.options import add_format


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list audio input devices for m2e stream",
        description="List the audio inputs PortAudio sees (loopback drivers such as BlackHole, JACK, PipeWire "
        "included). Give `m2e stream --input-device` an index or a (unique part of a) name.",
    )
    add_format(p, help="json: one JSON object per device and line (default); table: a readable table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from m2e_plugin.realtime.capture import CaptureError, list_input_devices

    try:
        devices = list_input_devices()
    except CaptureError as exc:
        print(f"m2e devices: {exc}", file=sys.stderr)
        return 2
    if not devices:  # said on stderr in both formats: an empty stdout alone looks like a hang or a crash
        print("m2e devices: no audio input devices found (JACK: start jackd; a file: m2e stream --input FILE)",
              file=sys.stderr)
        return 0
    if args.format == "json":
        for d in devices:
            print(json.dumps(d))
        return 0
    print(f"{'':2}{'index':>5}  {'channels':>8}  {'rate':>7}  {'host API':<26}  name")
    for d in devices:
        mark = "*" if d["default"] else ""
        print(f"{mark:2}{d['index']:>5}  {d['channels']:>8}  {d['samplerate']:>7.0f}  {d['hostapi']:<26}  {d['name']}")
    return 0
