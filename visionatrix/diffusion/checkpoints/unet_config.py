"""The shape of an LDM UNet read from its weights, and the diffusers config that builds it.

Works on ``{key: shape}`` with the ``model.diffusion_model.`` prefix removed. What the weights say: input and
output channels, model channels, channel multipliers, residual blocks per level, which levels attend, transformer
depth per level and in the middle, the cross-attention (context) width, linear or 1x1-conv projections and the
``label_emb`` input width (SDXL's ``adm_in_channels``). What they do not say (the number of attention heads) comes
from the family's rule, applied by :func:`diffusers_unet_config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from visionatrix.errors import ModelFileError

Shapes = Mapping[str, Sequence[int]]

HEAD_WIDTH = 64
"""SD2 and SDXL attend with heads of width 64 (the number of heads grows with the level's channels)."""
SD1_HEADS = 8
"""SD1.x attends with 8 heads at every level."""


@dataclass(frozen=True)
class UnetConfig:
    """An LDM UNet's hyper-parameters, as read from its weight shapes."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[bool, ...]
    transformer_depth: tuple[int, ...]
    """Transformer blocks per level (0 where the level does not attend)."""
    transformer_depth_middle: int
    context_dim: int
    use_linear_projection: bool
    adm_in_channels: int | None

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * mult for mult in self.channel_mult)


def unet_config_from_shapes(shapes: Shapes, path: object) -> UnetConfig:
    """Read the UNet's hyper-parameters from ``shapes`` (keys without the UNet prefix)."""
    conv_in = _shape(shapes, "input_blocks.0.0.weight", path)
    model_channels, in_channels = conv_in[0], conv_in[1]
    levels = _levels(shapes, path)
    res_blocks = {len(level) for level in levels}
    if len(res_blocks) != 1:
        raise ModelFileError(path, f"UNet levels hold different numbers of residual blocks: {sorted(res_blocks)}")
    channel_mult, attention, depth = [], [], []
    for index, level in enumerate(levels):
        channels = {width for width, _ in level}
        depths = {blocks for _, blocks in level}
        if len(channels) != 1 or len(depths) != 1:
            raise ModelFileError(path, f"UNet level {index} mixes block widths {channels} or depths {depths}")
        channel_mult.append(channels.pop() // model_channels)
        level_depth = depths.pop()
        attention.append(level_depth > 0)
        depth.append(level_depth)
    if not any(attention):
        raise ModelFileError(path, "UNet has no cross-attention blocks")
    first = next(key for key in sorted(shapes) if key.endswith("transformer_blocks.0.attn2.to_k.weight"))
    proj_in = next(key for key in sorted(shapes) if key.endswith(".proj_in.weight"))
    adm = shapes.get("label_emb.0.0.weight")
    return UnetConfig(
        in_channels=in_channels,
        out_channels=_shape(shapes, "out.2.weight", path)[0],
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=res_blocks.pop(),
        attention_levels=tuple(attention),
        transformer_depth=tuple(depth),
        transformer_depth_middle=_count(shapes, r"middle_block\.1\.transformer_blocks\.(\d+)\."),
        context_dim=shapes[first][1],
        use_linear_projection=len(shapes[proj_in]) == 2,
        adm_in_channels=adm[1] if adm is not None else None,
    )


def _levels(shapes: Shapes, path: object) -> list[list[tuple[int, int]]]:
    """Per level, each residual block's (output width, transformer depth); a downsampler closes a level."""
    levels: list[list[tuple[int, int]]] = [[]]
    block = 1
    while any(key.startswith(f"input_blocks.{block}.") for key in shapes):
        if f"input_blocks.{block}.0.op.weight" in shapes:
            levels.append([])
        else:
            width = _shape(shapes, f"input_blocks.{block}.0.in_layers.2.weight", path)[0]
            depth = _count(shapes, rf"input_blocks\.{block}\.1\.transformer_blocks\.(\d+)\.")
            levels[-1].append((width, depth))
        block += 1
    if not levels[0]:
        raise ModelFileError(path, "UNet has no input blocks after input_blocks.0")
    return levels


def _count(shapes: Shapes, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def _shape(shapes: Shapes, key: str, path: object) -> Sequence[int]:
    if key not in shapes:
        raise ModelFileError(path, f"UNet weight {key!r} is missing")
    return shapes[key]


def attention_heads(config: UnetConfig, *, head_width: int | None, path: object) -> tuple[int, ...]:
    """Heads per level: :data:`SD1_HEADS` everywhere when ``head_width`` is None, else channels // head width."""
    if head_width is None:
        return (SD1_HEADS,) * len(config.channel_mult)
    bad = [width for width in config.block_out_channels if width % head_width]
    if bad:
        raise ModelFileError(path, f"UNet widths {bad} are not multiples of the family's head width {head_width}")
    return tuple(width // head_width for width in config.block_out_channels)


def diffusers_unet_config(config: UnetConfig, *, heads: Sequence[int], addition_time_embed_dim: int | None,
                          sample_size: int, path: object) -> dict[str, Any]:
    """The ``UNet2DConditionModel`` config for ``config``; ``addition_time_embed_dim`` set means SDXL's
    ``text_time`` conditioning (``label_emb`` fed by the pooled text embedding and the size/crop embeddings)."""
    down = tuple("CrossAttnDownBlock2D" if attends else "DownBlock2D" for attends in config.attention_levels)
    up = tuple("CrossAttnUpBlock2D" if attends else "UpBlock2D" for attends in reversed(config.attention_levels))
    middle = config.transformer_depth_middle
    # diffusers' middle block takes the last entry: levels that do not attend carry the middle depth.
    depth = [level if attends else middle for level, attends in zip(config.transformer_depth, config.attention_levels)]
    if depth[-1] != middle:
        raise ModelFileError(path, f"UNet middle depth {middle} differs from its last level's {depth[-1]}: "
                                   "diffusers cannot build it")
    result: dict[str, Any] = {
        "sample_size": sample_size,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": config.block_out_channels,
        "layers_per_block": config.num_res_blocks,
        "cross_attention_dim": config.context_dim,
        "attention_head_dim": heads[0] if len(set(heads)) == 1 else tuple(heads),
        "use_linear_projection": config.use_linear_projection,
        "transformer_layers_per_block": depth[0] if len(set(depth)) == 1 else tuple(depth),
    }
    if addition_time_embed_dim is not None:
        result.update(addition_embed_type="text_time", addition_time_embed_dim=addition_time_embed_dim,
                      projection_class_embeddings_input_dim=config.adm_in_channels)
    return result
