"""Feature extractors that feed the heads: MERT (music2emo) and the lite spectral front end."""
