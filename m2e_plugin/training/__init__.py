"""Training, distillation and evaluation (metrics as in the paper)."""
