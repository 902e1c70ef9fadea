"""A timm ViT whose per-token layers run on two groups of tokens: the ones that fill whole 32-row blocks, and the rest.

OpenVINO's CPU plugin shares a linear layer's rows (tokens x images) among its threads in blocks of 32 rows, whole
blocks to a thread. ViT-B/16's 197 tokens are six full blocks and a block of 5: on 2 cores one thread gets four
blocks and the other three, and the layer takes as long as one of 256 tokens (measured: the int8 GEMM of 197 rows
as slow as 256, of 192 rows 1.3x faster). So the IR is made from this model: LayerNorm, qkv, proj and the MLP of
every block run on the first 192 tokens and, apart, on the last 5; the groups meet only where attention needs every
token. Each thread then gets three full blocks, the 5-row layers are short, and batch 1 gets faster (ViT-B/16 int8
on 2 cores, one probe timed in turns: 80.8 -> 69.8 ms). Where the head reads the class token alone, the last block
also leaves out what does not reach it (69.8 -> 65.4 ms). The tokens run first in the layout (tokens, images, width):
the groups are then slices of the outer axis, so OpenVINO joins them for qkv and splits attention's output in place
(measured: 64.5 -> 58.7 ms) where, with images first, both were reference-kernel copies. q, k and v are linear layers
of their own, and attention sees the images' heads on one axis, so each is one transpose from attention's layout
and OpenVINO's attention kernel reads them in place, where the joint qkv output was split and permuted by copies
(0.91-0.96x the time in turns). The answers are the same (the same arithmetic on the same rows). Batches of many
images and the ONNX files are unchanged.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import nn

ROW_BLOCK = 32  # rows per block of the CPU plugin's int8 GEMMs (brgemm, AVX-512)


def split_point(tokens: int) -> int | None:
    """How many tokens fill whole row blocks, where a ragged rest is left (None: every block is full, or none is)."""
    whole = tokens // ROW_BLOCK * ROW_BLOCK
    return whole if 0 < whole < tokens else None


def token_split_model(model: nn.Module, input_size: tuple[int, ...]) -> TokenSplitViT | str:
    """`model` with its tokens in two groups, or why it cannot be (a sentence, for the stage's output)."""
    if type(model) is not VisionTransformer:
        return f"{type(model).__name__} is not a plain timm VisionTransformer"
    odd = [type(block).__name__ for block in model.blocks if not _plain_block(block)]
    if odd:
        return f"its blocks are not all timm's plain Block with Attention ({odd[0]})"
    with torch.no_grad():
        tokens = model._pos_embed(model.patch_embed(torch.zeros(1, *input_size))).shape[1]
    first = split_point(tokens)
    if first is None:
        return f"its {tokens} tokens leave no ragged row block"
    return TokenSplitViT(model, first, tokens)


def _plain_block(block: nn.Module) -> bool:
    attention = getattr(block, "attn", None)
    return type(block) is Block and type(attention) is Attention and getattr(attention, "gate", None) is None


class TokenSplitViT(nn.Module):
    """The same ViT, the same weights (shared, not copied), its tokens [0, first) and [first, end) apart between
    attentions. Where the head reads the class token alone (global_pool "token"), the last block computes only what
    reaches it: keys and values of every token, the rest for the class token (ViT-B/16: 6% of the multiply-adds
    left out, none of them in the answer). Eval only: dropout and drop-path are left out."""

    def __init__(self, vit: VisionTransformer, first: int, tokens: int) -> None:
        super().__init__()
        self.vit, self.first = vit, first
        self.groups = (first, tokens - first)  # tokens in each group, for the stage's record
        self.class_token_only = vit.attn_pool is None and vit.global_pool == "token"  # the head reads x[:, 0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        # Tokens first, (tokens, images, width): the groups are then contiguous halves of one buffer, and OpenVINO
        # joins and splits them in place, where along the token axis of (images, tokens, width) it copies each
        # block's qkv and attention output with reference kernels (ViT-B/16 int8 batch 1: 9% of the time).
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(pixels))).transpose(0, 1)
        groups = [x[: self.first], x[self.first :]]
        blocks = cast("list[Block]", list(vit.blocks))
        for depth, block in enumerate(blocks, start=1):
            attention = cast(Attention, block.attn)
            normed = [block.norm1(group) for group in groups]
            last = self.class_token_only and depth == len(blocks)
            asking = [normed[0][:1]] if last else normed  # the tokens whose queries are needed
            q, k, v = (
                torch.cat([_qkv_part(attention.qkv, part, group) for group in rows], dim=0)
                for part, rows in enumerate((asking, normed, normed))
            )
            mixed = attention.norm(_attention(attention, q, k, v))
            if last:
                groups, attended = [groups[0][:1]], [mixed]
            else:
                attended = [mixed[: self.first], mixed[self.first :]]
            groups = [group + block.ls1(attention.proj(part)) for group, part in zip(groups, attended, strict=True)]
            groups = [group + block.ls2(block.mlp(block.norm2(group))) for group in groups]
        return vit.forward_head(vit.norm(torch.cat(groups, dim=0).transpose(0, 1)))


def _qkv_part(qkv: nn.Module, part: int, tokens: torch.Tensor) -> torch.Tensor:
    """Part 0, 1 or 2 (q, k, v) of timm's joint qkv layer, as a linear layer of its own: each then reaches
    attention without the split of a joint output (a reference-kernel copy in OpenVINO)."""
    linear = cast(nn.Linear, qkv)
    width = linear.out_features // 3
    rows = slice(part * width, (part + 1) * width)
    return F.linear(tokens, linear.weight[rows], None if linear.bias is None else linear.bias[rows])


def _attention(attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """timm's Attention between its qkv and its output norm, tokens first: (tokens, images, width) in and out,
    every query token attending to every token. The images' heads share one axis, (1, tokens, images x heads,
    head width), so each input and the output is a single [0, 2, 1, 3] transpose away from attention's layout
    ([0, 2, 3, 1] for the keys), the transposes OpenVINO's attention kernel reads in place."""
    batch = k.shape[1]

    def heads(part: torch.Tensor) -> torch.Tensor:
        return part.reshape(1, part.shape[0], batch * attention.num_heads, attention.head_dim)

    q, k, v = attention.q_norm(heads(q)), attention.k_norm(heads(k)), heads(v)
    scores = (q.transpose(1, 2) * attention.scale) @ k.permute(0, 2, 3, 1)
    mixed = scores.softmax(dim=-1) @ v.transpose(1, 2)  # (1, images x heads, queries, head width)
    return mixed.transpose(1, 2).reshape(q.shape[1], batch, attention.attn_dim)
