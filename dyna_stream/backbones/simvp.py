"""SimVP-style CNN (OpenSTL shapes, scaled for CPU) with prunable groups.

Frames are stacked along channels (the T·C reshape): input (B, (T_in+T_out)·C, H, W) → output
(B, T_out·C, H, W). Encoder: two stride-2 stages to H/4 × W/4 (``stride=4``), or one to H/2 × W/2
(``stride=2``: small grids such as a city's 16 × 12 cells, where the latent stream would have a
handful of pixels; OpenSTL's SimVP sets the number of stride-2 stages per data set the same way).
Translator: residual blocks on a latent stream whose channels form one coupled gate group.
Decoder: PixelShuffle(2) stages mirroring the encoder (gates on the shuffled channels = filter
groups of r² = 4), a skip from the first encoder layer, and a zero-initialised 1×1 readout.
Subclasses swap the translator (TAU). ``context``: extra input channels after the stacked frames
(the coarse path's context features, :mod:`dyna_stream.model.coarse`).
"""
from __future__ import annotations

import torch

from ..model.context import MaskContext
from . import register_backbone
from .base import Backbone
from .layers import ConvUnit, Readout, Source

STRIDES = (2, 4)   # input pixels per latent pixel


@register_backbone("simvp")
class SimVP(Backbone):
    def __init__(self, *, t_in: int, t_out: int, channels: int, width: int = 16, latent: int = 48,
                 hidden: int = 64, blocks: int = 3, tile_latent: int = 4, stride: int = 4,
                 context: int = 0) -> None:
        super().__init__()
        if stride not in STRIDES:
            raise ValueError(f"SimVP's latent stride is one of {STRIDES}, not {stride}")
        second = 2 if stride == 4 else 1   # the second stage downsamples (and its decoder stage upsamples) or not
        self.tile_size = tile_latent * stride
        self.groups = {"enc1": width, "enc2": width, "enc3": latent, "latent": latent}
        image = Source(None, (t_in + t_out) * channels + context)
        self.enc1 = ConvUnit((image,), width, group="enc1")
        self.enc2 = ConvUnit((Source("enc1", width),), width, stride=2, group="enc2")
        self.enc3 = ConvUnit((Source("enc2", width),), latent, group="enc3")
        self.enc4 = ConvUnit((Source("enc3", latent),), latent, stride=second, group="latent")
        self.groups.update(self.build_translator(latent, hidden, blocks))
        self.groups.update({"dec1": 2 * width, "dec2": width, "dec3": width})
        self.dec1 = ConvUnit((Source("latent", latent),), 2 * width, shuffle=second, group="dec1")
        self.dec2 = ConvUnit((Source("dec1", 2 * width),), width, shuffle=2, group="dec2")
        self.dec3 = ConvUnit((Source("dec2", width), Source("enc1", width)), width, group="dec3")
        self.readout = Readout((Source("dec3", width),), t_out * channels)

    def build_translator(self, latent: int, hidden: int, blocks: int) -> dict[str, int]:
        """Residual conv blocks (latent → hidden → latent, 3×3); returns their gate groups."""
        self.expand = torch.nn.ModuleList(
            ConvUnit((Source("latent", latent),), hidden, group=f"trans{i}") for i in range(blocks))
        self.reduce = torch.nn.ModuleList(
            ConvUnit((Source(f"trans{i}", hidden),), latent, group="latent") for i in range(blocks))
        return {f"trans{i}": hidden for i in range(blocks)}

    def translate(self, z: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        """The latent stream (B, latent, H/stride, W/stride) through the translator."""
        for expand, reduce in zip(self.expand, self.reduce):
            z = z + reduce(expand(z, ctx), ctx)
        return z

    def forward(self, inputs: torch.Tensor, ctx: MaskContext) -> torch.Tensor:
        skip = self.enc1(ctx.mask_input(inputs), ctx)
        z = self.translate(self.enc4(self.enc3(self.enc2(skip, ctx), ctx), ctx), ctx)
        y = self.dec2(self.dec1(z, ctx), ctx)
        return self.readout(self.dec3(ctx.concat([y, skip]), ctx), ctx)
