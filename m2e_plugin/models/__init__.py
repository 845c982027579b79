"""Prediction heads and checkpoint loading (Music2Emo multitask head, lite head)."""
