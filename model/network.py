"""A Pose-VLA-style model in miniature (docs/training.md).

* Image encoder: a small ViT trained from scratch (``PatchViT``: convolutional stem, 2-D Fourier
  position codes, transformer blocks, final LayerNorm), or any ``nn.Module`` that maps
  ``(B, 3, H, W)`` float images to ``(B, N, dim)`` features on the same ``N = (W/patch)(H/patch)``
  patch grid (e.g. a local Hugging Face checkpoint wrapped by the caller; nothing is ever
  downloaded). The grid's position codes are added again to the encoder output.
* Geometry priors added to the patch features, as Pose-VLA does: the ray map ``K^-1 [u, v, 1]``
  (3 channels) and, when present, metric depth + valid mask (2 channels), each through its own
  patch MLP (PixelUnshuffle then MLP), each dropped with probability 0.5 per sample in training.
* Instruction: UTF-8 bytes embedded and appended to the prefix.
* A transformer over ``[prefix ; pose tokens]`` with a prefix-LM mask (prefix bidirectional,
  tokens causal) predicts the next pose token (stages ``pose`` and ``trajectory``). Token embedding
  and output head are tied and, in training from scratch, start ordinal (:meth:`PoseVLA.init_ordinal_tokens`).
* A flow-matching action expert (stage ``action``): ``x_t = t eps + (1 - t) a``, ``t ~ Beta(1.5, 1)``,
  regresses the velocity ``u = eps - a`` from the noisy chunk and ``t``; its action tokens attend
  (cross-attention in every expert layer) to the prefix's TOKEN STATES after the transformer (patch
  and text tokens, plus one token of the robot state when the embodiment has one), as pi0's expert
  reads the VLM's keys and values; actions are sampled by Euler integration from ``t = 1`` (noise)
  to ``t = 0``. Actions and state are in the form of ``model.actions`` (6D rotations, quantile
  normalised).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

BYTE_VOCAB = 257  # 256 byte values + padding (index 256)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 7567  # pose-token vocabulary (posetok-v1)
    image_size: tuple[int, int] = (96, 72)  # W, H fed to the encoder
    patch: int = 12
    conv_stem: bool = True  # strided 3x3 convolutions down to the patch grid instead of one linear patch embedding
    dim: int = 128
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    expert_layers: int = 2
    max_text: int = 48
    # pose-token budget of one view (model.token_budget): 128 holds a bimanual row (2 arms x (now + 5
    # waypoints) x 10 tokens + 4 = 124) or 10 objects (10 x 12 + 4); longer rows drop whole poses, counted
    max_tokens: int = 128
    chunk: int = 8
    action_dim: int = 10  # network-side action features (model.actions: DROID = xyz + 6D rotation + gripper)
    state_dim: int = 0  # network-side state features; 0 = no state token
    prior_dropout: float = 0.5
    dropout: float = 0.0
    label_sigma: float = 1.5  # soft targets: Gaussian over neighbouring bins of the right family
    ordinal_tokens: bool = True  # tied token embedding / output head, bins initialised by their position

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": ModelConfig(),
    "small": ModelConfig(
        image_size=(192, 144), patch=16, dim=256, heads=8, encoder_layers=6, decoder_layers=6, expert_layers=4
    ),
}


def fourier_features(position: torch.Tensor, dim: int) -> torch.Tensor:
    """``(..., dim)`` cos / sin of ``position`` (in [0, 1]) at ``dim // 2`` frequencies spaced
    geometrically from 0.5 to 64 periods over [0, 1], scaled to unit norm. Shared by the image
    patch positions and the pose-token bins, so "where in the image" and "which bin" start in the
    same code."""
    cycles = torch.logspace(-1, 6, dim // 2, base=2.0)
    phase = 2 * torch.pi * position[..., None] * cycles
    return torch.cat([phase.cos(), phase.sin()], dim=-1) / (dim // 2) ** 0.5


def grid_positions(columns: int, rows: int, dim: int) -> torch.Tensor:
    """``(rows * columns, dim)`` 2-D position codes of a patch grid (row-major): Fourier features of
    the patch centre's u / W in the first half of the channels, of v / H in the second."""
    u = (torch.arange(columns) + 0.5) / columns
    v = (torch.arange(rows) + 0.5) / rows
    grid_v, grid_u = torch.meshgrid(v, u, indexing="ij")
    return torch.cat([fourier_features(grid_u.flatten(), dim // 2), fourier_features(grid_v.flatten(), dim // 2)], 1)


def _blocks(cfg: ModelConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def patch_strides(patch: int) -> list[int]:
    """The patch size as a product of strides 2 and 3 (12 -> [2, 2, 3], 16 -> [2, 2, 2, 2])."""
    strides, rest = [], patch
    for factor in (2, 3):
        while rest % factor == 0:
            strides.append(factor)
            rest //= factor
    if rest != 1 or not strides:
        raise ValueError(f"patch size {patch} is not a product of 2s and 3s (needed by the convolutional stem)")
    return sorted(strides)


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al. 2021, "Early convolutions help transformers see better"):
    one strided 3x3 conv + GroupNorm + GELU per stride of :func:`patch_strides`, channels doubling
    up to ``dim``, then a 1x1 projection. Maps ``(B, 3, H, W)`` to the same ``(H/patch, W/patch)``
    grid as a linear patch embedding, with a much better prior for localisation on small data."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        strides = patch_strides(cfg.patch)
        layers, channels = [], 3
        for i, stride in enumerate(strides):
            out = max(cfg.dim >> (len(strides) - 1 - i), 16)
            layers += [nn.Conv2d(channels, out, 3, stride, padding=1 if stride == 2 else 0),
                       nn.GroupNorm(min(8, out), out), nn.GELU()]
            channels = out
        self.layers = nn.Sequential(*layers, nn.Conv2d(channels, cfg.dim, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class PatchViT(nn.Module):
    """ViT trained from scratch: patch embedding (conv stem or one linear patch projection) + position
    codes (initialised as :func:`grid_positions`, then learned) + transformer blocks + LayerNorm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w, h = cfg.image_size
        self.embed = ConvStem(cfg) if cfg.conv_stem else nn.Conv2d(3, cfg.dim, cfg.patch, cfg.patch)
        self.pos = nn.Parameter(grid_positions(w // cfg.patch, h // cfg.patch, cfg.dim)[None])
        self.blocks = _blocks(cfg, cfg.encoder_layers)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(x + self.pos))


class PatchPrior(nn.Module):
    """Pose-VLA's ``PatchEmbed_Mlp``: PixelUnshuffle(patch) then MLP(C p^2 -> 4 dim -> dim)."""

    def __init__(self, channels: int, cfg: ModelConfig):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(cfg.patch)
        self.mlp = nn.Sequential(
            nn.Linear(channels * cfg.patch**2, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim)
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.unshuffle(maps).flatten(2).transpose(1, 2))


def ray_maps(K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``(B, 3, H, W)`` rays ``K^-1 [u, v, 1]`` (OpenCV pixel centres) of intrinsics ``(B, 3, 3)``."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=K.dtype, device=K.device),
        torch.arange(width, dtype=K.dtype, device=K.device),
        indexing="ij",
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(3, -1)
    return (torch.linalg.inv(K) @ pix).reshape(-1, 3, height, width)


class PoseVLA(nn.Module):
    def __init__(self, cfg: ModelConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoder = backbone if backbone is not None else PatchViT(cfg)
        self.ray_prior = PatchPrior(3, cfg)
        self.depth_prior = PatchPrior(2, cfg)
        # the grid's position codes again on the encoder output (DETR-style); x4 to count next to the
        # encoder's LayerNorm'd features (unit variance per channel, norm ~ sqrt(dim))
        w, h = cfg.image_size
        self.patch_pos = nn.Parameter(4 * grid_positions(w // cfg.patch, h // cfg.patch, cfg.dim)[None])
        self.text = nn.Embedding(BYTE_VOCAB, cfg.dim)
        self.text_pos = nn.Parameter(torch.randn(1, cfg.max_text, cfg.dim) * 0.02)
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.token_pos = nn.Parameter(torch.randn(1, cfg.max_tokens, cfg.dim) * 0.02)
        self.decoder = _blocks(cfg, cfg.decoder_layers)
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size)
        if cfg.ordinal_tokens:
            self.head.weight = self.tokens.weight
        self.action_in = nn.Linear(cfg.action_dim, cfg.dim)
        self.state_in = nn.Linear(cfg.state_dim, cfg.dim) if cfg.state_dim else None
        self.time = nn.Sequential(nn.Linear(1, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))
        self.action_pos = nn.Parameter(torch.randn(1, cfg.chunk, cfg.dim) * 0.02)
        expert_layer = nn.TransformerDecoderLayer(
            cfg.dim, cfg.heads, 4 * cfg.dim, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.expert = nn.TransformerDecoder(expert_layer, cfg.expert_layers)
        self.action_out = nn.Linear(cfg.dim, cfg.action_dim)

    @torch.no_grad()
    def init_ordinal_tokens(self, family: torch.Tensor, position: torch.Tensor) -> None:
        """Initialise the (tied) token embeddings so that neighbouring bins start close: a bin's row
        is half a random unit code of its family plus unit-norm Fourier features of its position in
        the family (``family`` ``(vocab,)`` index, -1 for special tokens, which get a random unit code
        each; ``position`` in (0, 1)). A logit ``h . w_bin`` is then a smooth function of the bin's
        value, so the gradient of a target bin also raises its neighbours: the ordinal prior that a
        pretrained VLM's ``<loc>`` embeddings bring, which a model trained from scratch otherwise
        learns bin by bin. Draws from the global torch RNG."""
        special = family < 0
        codes = F.normalize(torch.randn(int(family.max()) + 1, self.cfg.dim), dim=1)
        weight = 0.5 * codes[family.clamp(min=0)] + fourier_features(position, self.cfg.dim)
        weight[special] = F.normalize(torch.randn(int(special.sum()), self.cfg.dim), dim=1)
        self.tokens.weight.copy_(weight)

    # ---------------------------------------------------------------------------------- prefix
    def encode_prefix(
        self, images: torch.Tensor, K: torch.Tensor, text: torch.Tensor, depth: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, P, dim)`` from uint8 images ``(B, H, W, 3)``, K ``(B, 3, 3)``, text bytes ``(B, L)``
        and optional metric depth ``(B, H, W)`` [m] (0 = no reading)."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        b, _, h, w = x.shape
        feats = self.encoder(x) + self.patch_pos
        keep_ray = keep_depth = torch.ones(b, 1, 1, device=x.device)
        if self.training:
            keep_ray = (torch.rand(b, 1, 1, device=x.device) >= self.cfg.prior_dropout).float()
            keep_depth = (torch.rand(b, 1, 1, device=x.device) >= self.cfg.prior_dropout).float()
        feats = feats + keep_ray * self.ray_prior(ray_maps(K.float(), w, h))
        if depth is not None:
            d = depth.float().unsqueeze(1)
            feats = feats + keep_depth * self.depth_prior(torch.cat([d, (d > 0).float()], dim=1))
        words = self.text(text) + self.text_pos[:, : text.shape[1]]
        return torch.cat([feats, words], dim=1)

    # ---------------------------------------------------------------------------------- tokens
    def token_logits(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab)`` predicting ``tokens[:, t + 1]`` at position ``t`` (prefix-LM)."""
        p, t = prefix.shape[1], tokens.shape[1]
        x = torch.cat([prefix, self.tokens(tokens) + self.token_pos[:, :t]], dim=1)
        mask = torch.zeros(p + t, p + t, dtype=torch.bool, device=x.device)
        mask[:, p:] = True  # nobody sees tokens ...
        mask[p:, p:] = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), 1)  # ... except earlier ones
        out = self.decoder(x, mask=mask)
        return self.head(self.norm(out[:, p:]))

    def context(self, prefix: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, P [+1], dim)``: the prefix's token states after the (bidirectional) transformer, plus
        one token of the state features ``(B, state_dim)`` when the model has a state input: what
        the action expert attends to."""
        memory = self.norm(self.decoder(prefix))
        if self.state_in is not None:
            if state is None:
                raise ValueError("this model was built with a state input; the batch has no state")
            memory = torch.cat([memory, self.state_in(state.float())[:, None]], dim=1)
        return memory

    # --------------------------------------------------------------------------------- actions
    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Velocity of the noisy chunk ``(B, chunk, A)`` at time ``t`` ``(B,)``; the action tokens attend
        to each other and to ``context`` (:meth:`context`)."""
        x = self.action_in(noisy) + self.action_pos + self.time(t[:, None])[:, None]
        return self.action_out(self.expert(x, context))

    def flow_loss(self, context: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss on normalised action chunks ``(B, chunk, A)``, masked per step."""
        t = torch.distributions.Beta(1.5, 1.0).sample((actions.shape[0],)).to(actions.device) * 0.999 + 0.001
        eps = torch.randn_like(actions)
        noisy = t[:, None, None] * eps + (1 - t[:, None, None]) * actions
        err = (self.velocity(noisy, t, context) - (eps - actions)) ** 2
        return (err.mean(dim=2) * mask).sum() / mask.sum().clamp(min=1)

    @torch.no_grad()
    def sample_actions(self, context: torch.Tensor, steps: int = 10, generator: torch.Generator | None = None):
        x = torch.randn(
            context.shape[0], self.cfg.chunk, self.cfg.action_dim, generator=generator, device=context.device
        )
        for i in range(steps, 0, -1):
            t = torch.full((context.shape[0],), i / steps, device=context.device)
            x = x - self.velocity(x, t, context) / steps
        return x

    @torch.no_grad()
    def generate(
        self, prefix: torch.Tensor, start: torch.Tensor, slots: list[tuple[int, int]], choose=None
    ) -> torch.Tensor:
        """Decode ``len(slots)`` tokens after ``start`` ``(B, s)``, token k restricted to the id range
        ``slots[k] = (first, end)`` (a pose layout: loc, loc, txy, txy, tz, ...). ``choose(k, probs)``
        picks the bin from the slot's probabilities ``(B, end - first)``; default: argmax."""
        tokens = start
        for k, (first, end) in enumerate(slots):
            probs = self.token_logits(prefix, tokens)[:, -1, first:end].float().softmax(-1)
            pick = probs.argmax(-1, keepdim=True) if choose is None else choose(k, probs)
            tokens = torch.cat([tokens, first + pick], dim=1)
        return tokens


def soft_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, family_of: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Cross-entropy against Gaussian soft targets over the neighbouring bins (within 4 sigma) of
    the target's own token family: ordinal bins, so a near miss costs less. Special tokens stay
    one-hot. ``family_of[v]`` is the family index of vocabulary id v (-1 for special tokens).
    Only the window's log-probabilities are gathered (no (B, T, vocab) weight tensor)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    reach = max(int(4 * sigma), 0)
    offsets = torch.arange(-reach, reach + 1, device=logits.device)
    idx = targets[..., None] + offsets  # (B, T, W)
    idx_c = idx.clamp(0, logits.shape[-1] - 1)
    fam = family_of[targets]
    valid = (idx == idx_c) & (family_of[idx_c] == fam[..., None])
    weights = torch.exp(-0.5 * (offsets.float() / sigma) ** 2) * valid
    weights = torch.where(fam[..., None] < 0, (offsets == 0).float().expand_as(weights), weights)
    weights = weights / weights.sum(-1, keepdim=True)
    loss = -(weights * logp.gather(-1, idx_c)).sum(-1)
    return (loss * mask).sum() / mask.sum().clamp(min=1)
