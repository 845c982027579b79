"""Realtime DAW sidecar: live capture, sliding-window inference, smoothing, OSC out, OSC control in, monitor page.

Pipeline (``m2e stream``)::

    capture process (PortAudio) -> shared-memory RingBuffer -> DeviceSource (supervision, reopen)  | FileSource
      -> Engine (scheduler + model worker, batched on a GPU) + FastFeatures (level, onsets, tempo/beats)
      -> Output (smoothing, quadrant/mood hysteresis, steady-rate steps, heartbeat)
      -> OscOut (one sender thread per destination, mapping per destination, bundles <= 1472 bytes);
    ControlServer and MonitorServer beside it.

Import the parts from their modules (``m2e_plugin.realtime.sidecar.Sidecar``...): this package imports nothing
heavy, and ``sounddevice`` is only imported when a live input is opened.
"""

__all__ = ["capture", "capture_process", "control", "engine", "features", "mapping", "memory", "monitor", "osc",
           "output", "ringbuffer", "sidecar", "smoothing"]
