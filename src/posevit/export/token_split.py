"""A timm ViT whose per-token layers run on two groups of tokens: the ones that fill whole 32-row blocks, and the rest.

OpenVINO's CPU plugin shares a linear layer's rows (tokens x images) among its threads in blocks of 32 rows, whole
blocks to a thread. ViT-B/16's 197 tokens are six full blocks and a block of 5: on 2 cores one thread gets four
blocks and the other three, and the layer takes as long as one of 256 tokens (measured: the int8 GEMM of 197 rows
as slow as 256, of 192 rows 1.3x faster). So the IR is made from this model: LayerNorm, qkv, proj and the MLP of
every block run on the first 192 tokens and, apart, on the last 5; the groups meet only where attention needs every
token. Each thread then gets three full blocks, the 5-row layers are short, and batch 1 gets faster (ViT-B/16 int8
on 2 cores, one probe timed in turns: 80.8 -> 69.8 ms). Where the head reads the class token alone, the last block
also leaves out what does not reach it (69.8 -> 65.4 ms). The answers are the same (the same arithmetic on the same
rows). Batches of many images and the ONNX files are unchanged.
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
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(pixels)))
        groups = [x[:, : self.first], x[:, self.first :]]
        blocks = cast("list[Block]", list(vit.blocks))
        for depth, block in enumerate(blocks, start=1):
            attention = cast(Attention, block.attn)
            qkv = torch.cat([attention.qkv(block.norm1(group)) for group in groups], dim=1)
            if self.class_token_only and depth == len(blocks):
                groups, attended = [groups[0][:, :1]], [attention.norm(_attention(attention, qkv, queries=1))]
            else:
                mixed = attention.norm(_attention(attention, qkv))
                attended = [mixed[:, : self.first], mixed[:, self.first :]]
            groups = [group + block.ls1(attention.proj(part)) for group, part in zip(groups, attended, strict=True)]
            groups = [group + block.ls2(block.mlp(block.norm2(group))) for group in groups]
        return vit.forward_head(vit.norm(torch.cat(groups, dim=1)))


def _attention(attention: Attention, qkv: torch.Tensor, queries: int | None = None) -> torch.Tensor:
    """timm's Attention between its qkv and its output norm: the first `queries` tokens (all: None) attend to every
    token."""
    batch, tokens, _ = qkv.shape
    q, k, v = qkv.reshape(batch, tokens, 3, attention.num_heads, attention.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attention.q_norm(q[:, :, :queries]), attention.k_norm(k)
    mixed = F.scaled_dot_product_attention(q, k, v, scale=attention.scale)
    return mixed.transpose(1, 2).reshape(batch, q.shape[2], attention.attn_dim)
