"""A BERT sentence encoder in plain torch: the sentence-transformers pipeline Transformer ->
mean Pooling -> Normalize, for the models that are exactly that (all-MiniLM-L6-v2 among them).

Why not the library: importing sentence-transformers (with transformers and scikit-learn)
takes about 5 s, most of a command-line recall. This needs torch, tokenizers and safetensors
only; its vectors equal the library's to float precision (tests/test_embeddings.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_POOLING = "sentence_transformers.models.Pooling"
_QKV = ("query", "key", "value")
_STAGES = ["sentence_transformers.models.Transformer", _POOLING, "sentence_transformers.models.Normalize"]


def is_bert_mean_pooling(path: Path) -> bool:
    """Whether the model directory holds a BERT with mean pooling and unit-length output."""
    try:
        config = json.loads((path / "config.json").read_text())
        modules = json.loads((path / "modules.json").read_text())
        pooling_dir = next(m["path"] for m in modules if m["type"] == _POOLING)
        pooling = json.loads((path / pooling_dir / "config.json").read_text())
    except (OSError, ValueError, KeyError, StopIteration):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and [m["type"] for m in modules] == _STAGES
        and modes == {"pooling_mode_mean_tokens"}
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    )


class BertEncoder:
    """The weights and tokenizer of one model directory (see ``is_bert_mean_pooling``)."""

    def __init__(self, path: Path) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        limit = int(config["max_position_embeddings"])
        st_config = path / "sentence_bert_config.json"
        if st_config.is_file():
            limit = min(limit, int(json.loads(st_config.read_text()).get("max_seq_length", limit)))
        self._w = {k.removeprefix("bert."): v for k, v in load_file(str(path / "model.safetensors")).items()}
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(limit)
        self._tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(len(texts), dim) float32 unit rows; texts of similar length are batched together,
        so little of each batch is padding."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._forward([texts[i] for i in chunk])
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        encodings = self._tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        types = torch.tensor([e.type_ids for e in encodings])
        w, (batch, length), eps = self._w, ids.shape, self._eps
        with torch.inference_mode():
            x = (
                w["embeddings.word_embeddings.weight"][ids]
                + w["embeddings.position_embeddings.weight"][:length]
                + w["embeddings.token_type_embeddings.weight"][types]
            )
            width = x.shape[-1]
            x = _norm(F, x, w, "embeddings.LayerNorm", eps)
            heads = self._heads
            keep = mask.bool()[:, None, None, :]  # padding is never attended to

            def split(t: Any) -> Any:  # (batch, length, width) -> (batch, heads, length, head width)
                return t.view(batch, length, heads, width // heads).transpose(1, 2)

            for i in range(self._layers):
                at = f"encoder.layer.{i}."
                q, k, v = (split(_linear(F, x, w, f"{at}attention.self.{n}")) for n in _QKV)
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
                attended = attended.transpose(1, 2).reshape(batch, length, width)
                x = _norm(F, _linear(F, attended, w, f"{at}attention.output.dense") + x, w,
                          f"{at}attention.output.LayerNorm", eps)  # fmt: skip
                hidden = F.gelu(_linear(F, x, w, f"{at}intermediate.dense"))
                x = _norm(F, _linear(F, hidden, w, f"{at}output.dense") + x, w, f"{at}output.LayerNorm", eps)
            weights = mask[:, :, None].to(x.dtype)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return F.normalize(pooled, dim=1).numpy()


def _linear(F: Any, x: Any, w: dict[str, Any], name: str) -> Any:
    return F.linear(x, w[name + ".weight"], w[name + ".bias"])


def _norm(F: Any, x: Any, w: dict[str, Any], name: str, eps: float) -> Any:
    return F.layer_norm(x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], eps)
