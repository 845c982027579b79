"""A show-length run through a real audio server: `m2e stream` on live JACK input for 10 minutes.

    nice -n 10 python benchmarks/bench_realtime_jack.py                       # 10 min + 2 min baseline
    python benchmarks/bench_realtime_jack.py --seconds 120 --baseline-seconds 30  # a quick look

A private JACK server (dummy driver, 48 kHz, no hardware needed) runs a player client that loops a playlist of
real music alternating calm and energetic clips (4Q dataset Q3 and Q1 clips, 30 s each, from the shared data)
and counts its own output underflows. First a **bare capture process** (a PortAudio callback that only copies)
listens for ``--baseline-seconds``: its input overflows per minute are the floor the machine allows. Then
``m2e stream --input-device system`` listens for ``--seconds``, sending OSC to a local receiver.

Printed (one table): input overflows per minute (bare vs m2e), the player's underflows per second in each phase,
resident memory of m2e (main + capture process) at start and end, its range once the shared ring has filled and its
median over the first and the last minute after that (sampled every second), minor page faults per analysed window of
the main process (~0 when the model's working set is reused, see realtime/memory.py), CPU (one core = 100 %),
latency p50/p95 (end of window -> bundle sent, from m2e's summary), reaction time to each calm -> energetic switch
(first time the arousal sent over OSC crosses the midpoint between the calm and the energetic plateau), quadrant
changes and the shortest time between two, and the largest datagram. Run it on a quiet machine, or report ``uptime``'s load beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from paths import shared_data

ROOT = Path(__file__).resolve().parents[1]
CLIP_S = 30.0

PLAYER = r"""
import json, sys, time, numpy as np, sounddevice as sd
audio = np.load(sys.argv[1], mmap_mode="r")
pos = [0]; underflows = [0]; callbacks = [0]
def cb(out, frames, t, status):
    if status.output_underflow:
        underflows[0] += 1
    callbacks[0] += 1
    i = pos[0] % audio.shape[0]
    chunk = audio[i:i + frames]
    if chunk.shape[0] < frames:
        chunk = np.concatenate([chunk, audio[: frames - chunk.shape[0]]])
    out[:, 0] = chunk
    pos[0] += frames
dev = [i for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0
       and "JACK" in sd.query_hostapis(d["hostapi"])["name"]][0]
with sd.OutputStream(device=dev, channels=1, samplerate=48000, blocksize=0, dtype="float32", callback=cb):
    print(json.dumps({"started": time.time()}), flush=True)
    for line in sys.stdin:
        print(json.dumps({"underflows": underflows[0], "callbacks": callbacks[0], "frames": pos[0]}), flush=True)
"""

BARE = r"""
import json, signal, sys, threading, numpy as np, sounddevice as sd
ring = np.zeros(48000 * 70, np.float32); n = [0]; overflows = [0]; callbacks = [0]
def cb(indata, frames, t, status):
    if status.input_overflow:
        overflows[0] += 1
    callbacks[0] += 1
    i = n[0] % ring.size
    k = min(frames, ring.size - i)
    ring[i:i + k] = indata[:k, 0]
    n[0] += frames
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
dev = [i for i, d in enumerate(sd.query_devices()) if d["name"] == "system" and d["max_input_channels"] > 0][0]
s = sd.InputStream(device=dev, channels=2, samplerate=48000, blocksize=1024, dtype="float32", callback=cb)
s.start(); print("opened", flush=True)
done.wait()
print(json.dumps({"overflows": overflows[0], "callbacks": callbacks[0], "frames": n[0]}), flush=True)
import os; os._exit(0)
"""


def playlist(n_pairs: int, out: Path) -> None:
    """Alternate calm (Q3) and energetic (Q1) clips, CLIP_S each, mono 48 kHz, saved as .npy."""
    import numpy as np

    from m2e_plugin.audio import load_audio

    base = shared_data() / "4q-dev"
    calm = sorted((base / "Q3").glob("*.mp3"))
    energetic = sorted((base / "Q1").glob("*.mp3"))
    if not calm or not energetic:
        sys.exit(f"no 4Q clips under {base} (set M2E_SHARED_DATA)")
    parts = []
    for i in range(n_pairs):
        for clip in (calm[i % len(calm)], energetic[i % len(energetic)]):
            y, _ = load_audio(clip, target_sr=48000)
            y = np.asarray(y, dtype=np.float32).reshape(-1)[: int(CLIP_S * 48000)]
            y = np.pad(y, (0, int(CLIP_S * 48000) - y.size))
            parts.append(0.5 * y / max(1e-6, float(np.max(np.abs(y)))))
    np.save(out, np.concatenate(parts))


class Receiver:
    """UDP receiver recording (time, datagram size, messages)."""

    def __init__(self):
        from pythonosc.osc_packet import OscPacket

        self.packets = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                try:
                    msgs = [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
                except Exception:
                    continue
                self.packets.append((time.time(), len(data), msgs))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def proc_stats(pid: int) -> tuple[float, float, int]:
    """(CPU seconds, RSS MB) of ``pid`` and its children, and the minor page faults of ``pid`` itself."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    cpu = rss = 0.0
    faults = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
            if p == pid:
                faults = int(fields[7])
        except (OSError, IndexError):
            pass
    return cpu, rss, faults


def jack(cmd, env, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, **kw)


def connect_player(env, before: set[str]) -> None:
    """Connect the player's output to the input ports that appeared since ``before``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ports = set(jack(["jack_lsp"], env).stdout.split())
        new_in = sorted(p for p in ports - before if p.startswith("PortAudio") and ":in" in p)
        if new_in:
            break
        time.sleep(0.2)
    else:
        sys.exit("the capture never registered JACK input ports")
    outs = sorted(p for p in ports if p.startswith("PortAudio") and ":out" in p)
    for p in new_in:
        jack(["jack_connect", outs[0], p], env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="m2e run length (default 600)")
    p.add_argument("--baseline-seconds", type=float, default=120.0, help="bare capture run (default 120)")
    p.add_argument("--model", default="lite", help="model (default lite)")
    p.add_argument("--latency", default="low", help="m2e --latency (default low)")
    p.add_argument("--period", type=int, default=512, help="JACK period in frames (default 512)")
    args = p.parse_args()

    name = "m2e-bench"  # fixed: JACK reclaims a dead same-name server's registry slot (a name per run leaks one)
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: list[subprocess.Popen] = []
    rec = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "playlist.npy"
        pairs = int((args.seconds + args.baseline_seconds) // (2 * CLIP_S)) + 2
        playlist(pairs, audio)
        try:
            server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000", "-p",
                                       str(args.period)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(server)
            if jack(["jack_wait", "-w", "-t", "10"], env).returncode != 0:
                sys.exit("jackd did not start")
            player = subprocess.Popen([sys.executable, "-c", PLAYER, str(audio)], env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      start_new_session=True)
            procs.append(player)
            play_start = json.loads(player.stdout.readline())["started"]

            def player_counts():
                player.stdin.write("?\n")
                player.stdin.flush()
                return json.loads(player.stdout.readline())

            # 1. Bare capture.
            before = set(jack(["jack_lsp"], env).stdout.split())
            bare = subprocess.Popen([sys.executable, "-c", BARE], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            procs.append(bare)
            bare.stdout.readline()
            connect_player(env, before)
            p0 = player_counts()
            time.sleep(args.baseline_seconds)
            p1 = player_counts()
            bare.send_signal(signal.SIGTERM)
            bare_result = json.loads(bare.stdout.readline())
            bare.wait(10)

            # 2. m2e stream.
            before = set(jack(["jack_lsp"], env).stdout.split())
            launch = time.time()
            m2e = subprocess.Popen([sys.executable, "-m", "m2e_plugin", "stream", "--input-device", "system",
                                    "--model", args.model, "--latency", args.latency, "--device", "cpu",
                                    "--osc", f"127.0.0.1:{rec.port}", "--quiet"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
            procs.append(m2e)
            connect_player(env, before)
            while not any(any(a == "/m2e/arousal" for a, _ in m) for _, _, m in rec.packets):
                if m2e.poll() is not None or time.time() - launch > 120:
                    sys.exit(f"m2e produced no values: {m2e.stderr.read()[-2000:]}")
                time.sleep(0.05)
            first_values = time.time() - launch
            time.sleep(10)  # warm-up excluded from CPU and the start RSS
            cpu0, rss0, faults0 = proc_stats(m2e.pid)
            t_cpu0 = time.monotonic()
            p2 = player_counts()
            # (seconds since launch, RSS MB) every second: a sparse sample of a quantity that moves within each
            # window (the model's working set) can read as a trend; the per-minute medians below cannot.
            rss_trace = []
            while time.time() - launch < args.seconds:
                time.sleep(min(1.0, max(0.0, args.seconds - (time.time() - launch))))
                rss_trace.append((time.time() - launch, proc_stats(m2e.pid)[1]))
            cpu1, rss1, faults1 = proc_stats(m2e.pid)
            measured_s = time.monotonic() - t_cpu0
            cpu = (cpu1 - cpu0) / measured_s * 100
            p3 = player_counts()
            m2e.send_signal(signal.SIGTERM)
            out, err = m2e.communicate(timeout=30)
            run_s = time.time() - launch
        finally:
            for proc in reversed(procs):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            rec.close()
    summary = json.loads(out.strip().splitlines()[-1])

    import numpy as np

    arousal = np.array([(t, m[1][0]) for t, _, msgs in rec.packets for m in msgs if m[0] == "/m2e/arousal"])
    quadrants = [(t, m[1][0]) for t, _, msgs in rec.packets for m in msgs if m[0] == "/m2e/quadrant"]
    changes = [t for (t, q), (_, q0) in zip(quadrants[1:], quadrants[:-1]) if q != q0]
    reactions = []
    k = 1
    while play_start + k * CLIP_S + CLIP_S <= arousal[-1, 0]:
        switch = play_start + k * CLIP_S  # clip k (odd k: calm -> energetic)
        calm = arousal[(arousal[:, 0] > switch - 10) & (arousal[:, 0] <= switch), 1]
        hot = arousal[(arousal[:, 0] > switch + 15) & (arousal[:, 0] <= switch + CLIP_S), 1]
        if calm.size and hot.size and np.median(hot) - np.median(calm) > 0.05 and switch > launch + first_values:
            mid = (np.median(hot) + np.median(calm)) / 2
            after = arousal[(arousal[:, 0] > switch) & (arousal[:, 1] >= mid), 0]
            if after.size:
                reactions.append(after[0] - switch)
        k += 2
    filled = [r for t, r in rss_trace if t >= 90]
    first_minute = [r for t, r in rss_trace if 90 <= t < 150]
    last_minute = [r for t, r in rss_trace if t >= rss_trace[-1][0] - 60] if rss_trace else []
    # windows analysed while the faults were counted (from 10 s after the first values on; steady rate)
    windows = summary["updates"] * measured_s / summary["seconds"] if summary["seconds"] else 0
    bare_min = args.baseline_seconds / 60
    load = os.getloadavg()
    rows = [
        ("input overflows / min (bare capture)", f"{bare_result['overflows'] / bare_min:.2f}"),
        ("input overflows / min (m2e)", f"{summary['input_overflows'] / summary['input_open_seconds'] * 60:.2f}"),
        ("player underflows / s (bare | m2e)",
         f"{(p1['underflows'] - p0['underflows']) / args.baseline_seconds:.3f} | "
         f"{(p3['underflows'] - p2['underflows']) / (args.seconds - 10 - first_values):.3f}"),
        ("xruns, skipped windows, input losses", f"{summary['input_xruns']}, {summary['skipped_windows']}, "
                                                 f"{summary['input_losses']}"),
        ("RSS MB at start -> end (main + capture)", f"{rss0:.1f} -> {rss1:.1f}"),
        # The shared ring (70 s of audio) is counted in both processes and fills during the first 70 s.
        ("RSS MB after the ring filled (>= 90 s): min / max", f"{min(filled):.1f} / {max(filled):.1f}"
         if filled else "run too short"),
        ("RSS MB median, first -> last minute after 90 s", f"{np.median(first_minute):.1f} -> "
         f"{np.median(last_minute):.1f}" if filled else "run too short"),
        ("page faults per window (main process)", f"{(faults1 - faults0) / max(1, windows):.0f}"),
        ("CPU % (one core = 100)", f"{cpu:.1f}"),
        ("latency p50 / p95 ms", f"{summary['latency_ms_median']} / {summary['latency_ms_p95']}"),
        ("first values after launch s", f"{first_values:.2f}"),
        ("reaction calm->energetic s (median, max, n)",
         f"{np.median(reactions):.2f}, {max(reactions):.2f}, {len(reactions)}" if reactions else "no contrast"),
        ("quadrant changes, shortest gap s",
         f"{len(changes)}, {min(np.diff(changes)):.2f}" if len(changes) > 1 else f"{len(changes)}, -"),
        ("largest datagram bytes", str(max(size for _, size, _ in rec.packets))),
        ("load average (1, 5, 15 min) at end", ", ".join(f"{x:.2f}" for x in load)),
    ]
    print(f"m2e stream on JACK dummy 48 kHz / {args.period}, model {args.model}, --latency {args.latency}, "
          f"{run_s:.0f} s (bare capture {args.baseline_seconds:.0f} s)")
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
