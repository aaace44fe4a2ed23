"""Training-time branches that fold away: RepVGG-style re-parameterization of a model's 3x3 convolutions.

A model YAML with `rep: true` at its top level is built (detector.glue.registry) with every plain 3x3 convolution,
Ultralytics' `Conv` with one group and no dilation, replaced by Ultralytics' own `RepConv`. While training, that layer
sums a 3x3 conv, a 1x1 conv and, where input and output have the same shape (stride 1, same width), the input through
a BatchNorm, each branch with its own BatchNorm, before the activation: more paths for gradients, which helps a model
trained from scratch. Ultralytics' `fuse()`, which prediction, validation, export and `detector.bench` run, folds the
three branches into one 3x3 conv: the deployed model has exactly the shape, the operators and the cost of the same
YAML without `rep`. Only Ultralytics' classes are used, so checkpoints load in Ultralytics alone.

Depthwise and grouped convs (the Detect head's class branch, attention's positional conv), 1x1 convs and Conv's
subclasses are left as they are.
"""

from __future__ import annotations

from torch import nn
from ultralytics.nn.modules.conv import Conv, RepConv

# What Ultralytics' model parser sets on every top-level layer, which its forward pass and checkpoints read.
_LAYER_ATTRS = ("i", "f", "type")


def _plain_3x3(m: nn.Module) -> bool:
    """A `Conv` (not a subclass such as DWConv) with a 3x3, padding 1, one-group, undilated convolution."""
    if type(m) is not Conv or not hasattr(m, "bn"):  # no bn: already fused
        return False
    c = m.conv
    return c.kernel_size == (3, 3) and c.padding == (1, 1) and c.dilation == (1, 1) and c.groups == 1 \
        and c.stride[0] == c.stride[1]


def _rep_conv(m: Conv) -> RepConv:
    c = m.conv
    new = RepConv(c.in_channels, c.out_channels, 3, c.stride[0], 1, act=m.act, bn=True)
    for name in _LAYER_ATTRS:
        if name in vars(m):  # the instance's own (nn.Module has a method called `type`)
            setattr(new, name, vars(m)[name])
    if "np" in vars(m):
        new.np = sum(p.numel() for p in new.parameters())
    return new.to(device=c.weight.device, dtype=c.weight.dtype)


def reparameterize(model: nn.Module) -> int:
    """Replace every plain 3x3 `Conv` in `model` by a `RepConv` (fresh weights), in place. Returns how many.
    For a model being built: the replaced convs' weights are not carried over."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _plain_3x3(child):
                setattr(parent, name, _rep_conv(child))
                replaced += 1
    return replaced
