"""Harmony: chord recognition (offline and BTC) and key estimation."""
