"""TAU (Temporal Attention Unit, Tan et al. 2023): SimVP's encoder and decoder around attention blocks.

Each translator block i, on the latent stream z (B, latent, H/4, W/4):
  attention  u = SiLU(BN(1×1 z));  f = 1×1(dw 7×7 dilation 3(dw 5×5 u));  g = SE(u);
             z ← z + 1×1(u ⊙ f ⊙ g)
  MLP        z ← z + 1×1(SiLU(dw 3×3(1×1 z)))
The attention channels form gate group ``attn{i}``, the MLP channels ``mlp{i}``; both 1×1 outputs
write the coupled ``latent`` group. Large-kernel depthwise parts are cheap on the whole canvas;
the 1×1 parts and SE run on the kept tiles and channels only (SE pools over the kept tiles).
"""
from __future__ import annotations

import torch
from torch import nn

from ..model.context import MaskContext
from . import register_backbone
from .layers import ConvUnit, Source, SqueezeExcite
from .simvp import SimVP


class AttentionBlock(nn.Module):
    def __init__(self, latent: int, group: str) -> None:
        super().__init__()
        stream, own = Source("latent", latent), Source(group, latent)
        self.group = group
        self.project = ConvUnit((stream,), latent, kernel=1, group=group)
        self.local = ConvUnit((own,), latent, kernel=5, depthwise=True, group=group, activation=False)
        self.wide = ConvUnit((own,), latent, kernel=7, dilation=3, depthwise=True, group=group, activation=False)
        self.mix = ConvUnit((own,), latent, kernel=1, group=group, activation=False)
        self.excite = SqueezeExcite(own)
        self.out = ConvUnit((own,), latent, kernel=1, group="latent", activation=False)

    def forward(self, z: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        u = self.project(z, ctx)
        statical = self.mix(self.wide(self.local(u, ctx), ctx), ctx)
        dynamical = self.excite(u, ctx)
        attended = ctx.pointwise(lambda f, x: f * x * dynamical[:, :, None, None], statical, u, group=self.group)
        return self.out(attended, ctx)


class MlpBlock(nn.Module):
    def __init__(self, latent: int, hidden: int, group: str) -> None:
        super().__init__()
        self.expand = ConvUnit((Source("latent", latent),), hidden, kernel=1, group=group, activation=False)
        self.mix = ConvUnit((Source(group, hidden),), hidden, kernel=3, depthwise=True, group=group)
        self.reduce = ConvUnit((Source(group, hidden),), latent, kernel=1, group="latent", activation=False)

    def forward(self, z: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        return self.reduce(self.mix(self.expand(z, ctx), ctx), ctx)


@register_backbone("tau")
class TAU(SimVP):
    def build_translator(self, latent: int, hidden: int, blocks: int) -> dict[str, int]:
        """Attention + MLP blocks; returns their gate groups."""
        self.attention = nn.ModuleList(AttentionBlock(latent, f"attn{i}") for i in range(blocks))
        self.mlp = nn.ModuleList(MlpBlock(latent, hidden, f"mlp{i}") for i in range(blocks))
        groups = {}
        for i in range(blocks):
            groups.update({f"attn{i}": latent, f"mlp{i}": hidden})
        return groups

    def translate(self, z: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        for attention, mlp in zip(self.attention, self.mlp):
            z = z + attention(z, ctx)
            z = z + mlp(z, ctx)
        return z
