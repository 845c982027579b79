"""Builders for tiny, randomly initialised Music2Emo weights in the published on-disk formats.

HF is unreachable in CI, so the music2emo path is tested with files that have the real layouts: a MERT directory
(``config.json`` with ``model_type: mert_model`` + ``pytorch_model.bin`` or ``model.safetensors``, old-style
``weight_g``/``weight_v`` positional-conv names) and a PyTorch-Lightning ``.ckpt`` holding exactly the published
head key names and shapes plus Lightning's extra entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Field set of m-a-p/MERT-v1-95M's config.json, with the transformer shrunk (hidden 768 -> 768 is kept so the
# head's 1536-d input matches; depth and width of everything else are small).
MERT_V1_CONFIG = {
    "_name_or_path": "m-a-p/MERT-v1-95M",
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.1,
    "attention_relax": -1.0,
    "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [512, 512, 512, 512, 512, 512, 512],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_pos_batch_norm": False,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "sample_rate": 24000,
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
    "torch_dtype": "float32",
    "transformers_version": "4.25.1",
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}

TINY = {"conv_dim": [32] * 7, "num_hidden_layers": 8, "num_attention_heads": 4, "intermediate_size": 64,
        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


def make_mert_dir(path: Path, *, safetensors: bool = False, seed: int = 0, **overrides) -> Path:
    """Write a tiny random MERT directory (hidden 768, 8 layers) in MERT's on-disk format; returns ``path``."""
    from transformers import HubertModel

    from m2e_plugin.backbones.mert import hubert_config_from_mert

    path.mkdir(parents=True, exist_ok=True)
    config = {**MERT_V1_CONFIG, **TINY, **overrides}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    model = HubertModel(hubert_config_from_mert(config))
    state = {}
    for k, v in model.state_dict().items():
        # MERT's checkpoints predate torch's weight-norm parametrisation: weight_g / weight_v names.
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                              "weight_v")
        state[k] = v.clone().contiguous()
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(path / "model.safetensors"))
    else:
        torch.save(state, path / "pytorch_model.bin")
    return path


# The published head's state-dict names and shapes (reference doc section 3.2-3.3).
def head_shapes(input_size: int = 1536) -> dict[str, tuple[int, ...]]:
    shapes = {"chord_root_embedding.weight": (14, 4), "chord_attr_embedding.weight": (14, 4)}
    for i in (0, 1):
        p = f"chord_transformer.layers.{i}."
        shapes.update({p + "self_attn.in_proj_weight": (24, 8), p + "self_attn.in_proj_bias": (24,),
                       p + "self_attn.out_proj.weight": (8, 8), p + "self_attn.out_proj.bias": (8,),
                       p + "linear1.weight": (64, 8), p + "linear1.bias": (64,),
                       p + "linear2.weight": (8, 64), p + "linear2.bias": (8,),
                       p + "norm1.weight": (8,), p + "norm1.bias": (8,), p + "norm2.weight": (8,), p + "norm2.bias": (8,)})
    shapes.update({"input_proj.0.weight": (512, input_size + 9), "input_proj.0.bias": (512,),
                   "classification_branch.0.weight": (256, 512), "classification_branch.0.bias": (256,),
                   "classification_branch.2.weight": (56, 256), "classification_branch.2.bias": (56,),
                   "regression_branch.0.weight": (256, 512), "regression_branch.0.bias": (256,),
                   "regression_branch.2.weight": (2, 256), "regression_branch.2.bias": (2,)})
    return shapes


def random_head_state(seed: int = 0, va_bias: tuple[float, float] = (5.0, 5.0)) -> dict[str, torch.Tensor]:
    """Random tensors under the published names; norms near 1, VA bias near the 1-9 scale's middle."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in head_shapes().items():
        t = torch.randn(shape, generator=g) * (0.05 if len(shape) > 1 else 0.02)
        if "norm" in name and name.endswith("weight"):
            t = 1.0 + t
        state[name] = t
    state["regression_branch.2.bias"] = torch.tensor(va_bias) + state["regression_branch.2.bias"]
    return state


def make_lightning_ckpt(path: Path, state: dict[str, torch.Tensor] | None = None, seed: int = 0) -> Path:
    """Write a PyTorch-Lightning-format checkpoint like ``J_all.ckpt``: ``model.``-prefixed weights, loss buffers,
    optimiser and callback state."""
    state = random_head_state(seed) if state is None else state
    sd = {f"model.{k}": v for k, v in state.items()}
    priors = torch.linspace(0.006, 0.093, 56)
    for name in ("loss_fn_classification", "loss_fn_classification_eval"):
        sd[f"{name}.weight"] = 2 / (1 + 1 / priors)
        sd[f"{name}.pos_weight"] = 1 / priors
    ckpt = {
        "epoch": 12,
        "global_step": 15564,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 13, "completed": 12}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss_mood', 'mode': 'min', 'every_n_train_steps': 0, "
            "'every_n_epochs': 1, 'train_time_interval': None}": {
                "monitor": "val_loss_mood", "best_model_score": torch.tensor(0.4012),
                "best_model_path": "/tb_logs/run/checkpoints/epoch=12.ckpt", "current_score": torch.tensor(0.4012),
                "dirpath": "/tb_logs/run/checkpoints", "best_k_models": {"/tb_logs/e12.ckpt": torch.tensor(0.4012)},
                "kth_best_model_path": "/tb_logs/e12.ckpt", "kth_value": torch.tensor(0.41), "last_model_path": ""},
            "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}": {
                "wait_count": 3, "stopped_epoch": 0, "best_score": torch.tensor(1.23), "patience": 10},
        },
        "optimizer_states": [{
            "state": {0: {"step": torch.tensor(15564.0), "exp_avg": torch.zeros(14, 4), "exp_avg_sq": torch.zeros(14, 4)}},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
                              "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                              "fused": None, "params": [0]}],
        }],
        "lr_schedulers": [],
    }
    torch.save(ckpt, path)
    return path


def make_music2emo_weights(root: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """A tiny MERT directory and a Lightning head checkpoint under ``root``; returns ``(mert_dir, ckpt)``."""
    mert = make_mert_dir(root / "MERT-tiny", seed=seed)
    ckpt = make_lightning_ckpt(root / "J_all.ckpt", seed=seed)
    return mert, ckpt
