"""Realtime DAW sidecar: live capture, sliding-window inference, smoothing, OSC out, OSC control in, monitor page.

Pipeline (``m2e stream``)::

    SoundDeviceSource / FileSource -> RingBuffer -> Engine (scheduler + model worker) -> Output (smoothing,
    hysteresis, steady-rate OSC bundles, heartbeat) -> OSC destinations; ControlServer and MonitorServer beside it.

Import the parts from their modules (``m2e_plugin.realtime.sidecar.Sidecar``...): this package imports nothing
heavy, and ``sounddevice`` is only imported when a live input is opened.
"""

__all__ = ["capture", "control", "engine", "monitor", "osc", "output", "ringbuffer", "sidecar", "smoothing"]
