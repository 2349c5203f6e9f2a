"""ConvLSTM (Shi et al. 2015; OpenSTL shapes, scaled for CPU) with prunable groups.

The stacked input (B, (T_in+T_out)·C, H, W) is read as a sequence: the T_in observed frames, then
the T_out base frames (the fallback's guess for each lead plus the coarse path). Every step encodes its frame to
H/4 × W/4 (two stride-2 convs, shared over time: the space-to-depth stage), then runs stacked
ConvLSTM cells. A cell's gate conv (k×k over [input, h]) writes 4 adjacent channels per hidden
unit (i, f, o, g), so pruning a hidden unit removes its 4 filters together (gate group
``cell{l}``); h and c live on canvases at the latent resolution, zero on pruned tiles and units.
After each fallback step the top h is decoded (two PixelShuffle(2) stages); one zero-initialised
1×1 readout over the T_out decoded steps gives the correction (B, T_out·C, H, W).
Normalisation is BatchNorm on the gate convs (OpenSTL's LayerNorm would pool over pruned tiles):
folded into the conv at inference, so the sparse executor stays exact.
"""
from __future__ import annotations

import torch
from torch import nn

from ..model.context import MaskContext
from . import register_backbone
from .base import Backbone
from .layers import ConvUnit, Readout, Source

STRIDE = 4
GATES = 4   # i, f, o, g per hidden unit


def lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gates (B, 4·K, h, w) as K units × (i, f, o, g), cell (B, K, h, w) → new (h, c)."""
    i, f, o, g = gates.unflatten(1, (-1, GATES)).unbind(2)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


@register_backbone("convlstm")
class ConvLSTM(Backbone):
    def __init__(self, *, t_in: int, t_out: int, channels: int, width: int = 16, hidden: int = 32,
                 layers: int = 2, kernel: int = 5, tile_latent: int = 4, context: int = 0) -> None:
        super().__init__()
        if context:
            raise ValueError("ConvLSTM reads its input frame by frame and takes no coarse-path context "
                             "(model.coarse.context is for SimVP and TAU)")
        self.t_in, self.channels = t_in, channels
        self.tile_size = tile_latent * STRIDE
        self.enc1 = ConvUnit((Source(None, channels),), width, stride=2, group="enc1")
        self.enc2 = ConvUnit((Source("enc1", width),), width, stride=2, group="enc2")
        below, cells = Source("enc2", width), []
        for layer in range(layers):
            own = Source(f"cell{layer}", hidden)
            cells.append(ConvUnit((below, own), hidden, kernel=kernel, fan=GATES, group=own.group, activation=False))
            below = own
        self.cells = nn.ModuleList(cells)
        self.dec1 = ConvUnit((below,), width, shuffle=2, group="dec1")
        self.dec2 = ConvUnit((Source("dec1", width),), width, shuffle=2, group="dec2")
        self.readout = Readout((Source("dec2", width),) * t_out, t_out * channels)
        self.groups = {"enc1": width, "enc2": width}
        self.groups.update({cell.group: hidden for cell in self.cells})
        self.groups.update({"dec1": width, "dec2": width})

    def forward(self, inputs: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        hidden: list = [None] * len(self.cells)
        cell: list = [None] * len(self.cells)
        decoded = []
        for step, frame in enumerate(ctx.frames(ctx.mask_input(inputs), self.channels)):
            x = self.enc2(self.enc1(frame, ctx), ctx)
            for layer, gates in enumerate(self.cells):
                if hidden[layer] is None:
                    hidden[layer] = cell[layer] = ctx.zeros(gates.group, gates.cout, x)
                hidden[layer], cell[layer] = ctx.pointwise(
                    lstm_update, gates(ctx.concat([x, hidden[layer]]), ctx), cell[layer], group=gates.group)
                x = hidden[layer]
            if step >= self.t_in:
                decoded.append(self.dec2(self.dec1(x, ctx), ctx))
        return self.readout(ctx.concat(decoded), ctx)
