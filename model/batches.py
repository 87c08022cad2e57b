"""From collated loader batches to model inputs: the first view's image, K and pose tokens, the
instruction as bytes, and state / actions as network features (:mod:`model.actions`)."""

from __future__ import annotations

import torch

from model.actions import VectorSpace
from model.network import BYTE_VOCAB, ModelConfig
from schemas.tokenizer import Codebook


def encode_text(instructions: list[list[str]], max_len: int) -> torch.Tensor:
    """UTF-8 bytes of each sample's first instruction, padded with ``BYTE_VOCAB - 1`` to the longest
    in the batch (at least 1, at most ``max_len``): a batch without instructions costs one token."""
    data = [(texts[0] if texts else "").encode()[:max_len] for texts in instructions]
    out = torch.full((len(data), max(1, *(len(d) for d in data))), BYTE_VOCAB - 1, dtype=torch.long)
    for i, d in enumerate(data):
        out[i, : len(d)] = torch.tensor(list(d), dtype=torch.long)
    return out


def token_bins(book: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token id ``(vocab,)``: the family index (-1 for special tokens), and the bin's position
    inside its family, ``(bin + 0.5) / n_bins`` in (0, 1) (0 for special tokens). Bins are ordered,
    so neighbouring positions are neighbouring values."""
    family = torch.full((book.vocab_size,), -1, dtype=torch.long)
    position = torch.zeros(book.vocab_size)
    for index, fam in enumerate(book.families):
        start = book.offsets[fam.name]
        family[start : start + fam.n_bins] = index
        position[start : start + fam.n_bins] = (torch.arange(fam.n_bins) + 0.5) / fam.n_bins
    return family, position


def vector_features(
    space: VectorSpace | None, values: torch.Tensor | None, state: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Network-side features (:mod:`model.actions`) of raw state / action values ``(..., D)``
    (actions relative to the raw ``state`` when the space is)."""
    if space is None or values is None:
        return None
    return torch.from_numpy(space.encode(values.numpy(), None if state is None else state.numpy()))


def model_inputs(batch: dict, cfg: ModelConfig, device: torch.device) -> dict:
    """First view's uint8 image ``(B, H, W, 3)``, ``K``, text bytes and tokens. The tokens must
    already fit ``cfg.max_tokens`` (``model.batching.MixtureBatches(..., budget=)`` or
    :class:`model.token_budget.BudgetCollate` drop whole poses and count them); a longer batch is
    refused rather than cut inside a pose."""
    if batch["tokens"].shape[1] > cfg.max_tokens:
        raise ValueError(
            f"token sequences of {batch['tokens'].shape[1]} tokens exceed the model's budget of {cfg.max_tokens}: "
            f"load with model.batching.MixtureBatches(dataset, batch_size, budget={cfg.max_tokens}) or collate with "
            f"model.token_budget.BudgetCollate({cfg.max_tokens}), which drop whole poses and count them"
        )
    return {
        "images": batch["images"][:, 0].to(device),
        "K": batch["K"][:, 0].to(device),
        "text": encode_text(batch["instruction"], cfg.max_text).to(device),
        "tokens": batch["tokens"].to(device),
        "token_mask": batch["token_mask"].to(device),
    }
