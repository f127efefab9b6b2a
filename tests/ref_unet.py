"""U-Net, by hand: the truth that the netdsl U-Net spec must reproduce bitwise.

This is the standard U-Net of Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for
Biomedical Image Segmentation" (MICCAI 2015), in the layout PyTorch users commonly give it: a
contracting path of four 2x2 max-pool stages and an expanding path of four up-sampling stages,
each stage a pair of 3x3 convolutions with batch norm, and skip connections that concatenate the
contracting path's features onto the expanding path's. Convolutions are padded, so the output has
the input's height and width; where an odd size made a pooled map lose a row or column, the
up-sampled map is zero-padded back to the size of the skip connection before concatenation.

Written for this project from the architecture; the class names and attribute names
(``double_conv``, ``maxpool_conv``, ``up``, ``conv``, ``inc``, ``down1`` ... ``outc``) follow
that common layout so that its state_dict keys are the familiar ones.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """Two rounds of 3x3 convolution (no bias), batch norm and ReLU; ``mid`` channels between."""

    def __init__(self, in_channels: int, out_channels: int,
                 mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_channels, mid), (mid, out_channels)):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.double_conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """One contracting stage: halve the resolution, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """One expanding stage: double the resolution of the deeper map, join it to the skip map.

    Bilinear up-sampling keeps the channels, so the DoubleConv halves them on its way (its middle
    width is ``in_channels // 2``); a transposed convolution halves them itself.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = self.up(deep)
        # Zero-pad the up-sampled map (N, C, H, W) to the skip map's H and W, centred; F.pad
        # takes the last dimension first: (left, right, top, bottom).
        dy = skip.size(2) - deep.size(2)
        dx = skip.size(3) - deep.size(3)
        deep = F.pad(deep, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, deep], dim=1))


class OutConv(nn.Module):
    """The 1x1 convolution that maps the last features to per-pixel class scores."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """U-Net with widths 64-128-256-512-1024; with ``bilinear`` the two deepest widths halve."""

    def __init__(self, n_channels: int, n_classes: int, bilinear: bool = False) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.n_classes = n_classes
        self.bilinear = bilinear
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, 64)
        self.down1 = Down(64, 128)
        self.down2 = Down(128, 256)
        self.down3 = Down(256, 512)
        self.down4 = Down(512, 1024 // factor)
        self.up1 = Up(1024, 512 // factor, bilinear)
        self.up2 = Up(512, 256 // factor, bilinear)
        self.up3 = Up(256, 128 // factor, bilinear)
        self.up4 = Up(128, 64, bilinear)
        self.outc = OutConv(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.inc(x)
        s2 = self.down1(s1)
        s3 = self.down2(s2)
        s4 = self.down3(s3)
        y = self.down4(s4)
        for up, skip in ((self.up1, s4), (self.up2, s3), (self.up3, s2), (self.up4, s1)):
            y = up(y, skip)
        return self.outc(y)
