"""Realtime DAW sidecar: live capture, sliding-window inference, OSC out."""
