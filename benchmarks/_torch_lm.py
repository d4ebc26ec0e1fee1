"""The sandbox's LM in PyTorch (eager, CPU): the peer of benchmarks/train_throughput.py.

Same architecture as sandbox.nn.transformer: pre-norm blocks, LayerNorm (eps 1e-5), no
biases in the dense maps, tanh GELU, causal attention, learned positions, tied embeddings;
the same init (N(0, std^2), output projections std / sqrt(2 n_layers)); and the same train
step as the engine: a random window batch, cross-entropy, clip to global norm, AdamW.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d, heads, d_ff):
        super().__init__()
        self.heads = heads
        self.norm_attn, self.norm_mlp = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)

    def forward(self, x_BxLxD):
        b, length, d = x_BxLxD.shape
        h_BxLxD = self.norm_attn(x_BxLxD)

        def split(y):
            return y.view(b, length, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(h_BxLxD)), split(self.k(h_BxLxD)),
                                             split(self.v(h_BxLxD)), is_causal=True)
        x_BxLxD = x_BxLxD + self.o(out.transpose(1, 2).reshape(b, length, d))
        return x_BxLxD + self.down(F.gelu(self.up(self.norm_mlp(x_BxLxD)), approximate="tanh"))


class LM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = nn.Parameter(torch.empty(cfg.seq_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.d_ff) for _ in range(cfg.n_layers))
        self.norm_final = nn.LayerNorm(cfg.d_model)
        out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 2:
                std = out_std if name.endswith(("o.weight", "down.weight")) else cfg.init_std
                nn.init.normal_(p, std=std)

    def forward(self, tokens_BxL):
        x_BxLxD = self.tokens(tokens_BxL) + self.positions[: tokens_BxL.shape[1]]
        for block in self.blocks:
            x_BxLxD = block(x_BxLxD)
        return self.norm_final(x_BxLxD) @ self.tokens.weight.T  # tied unembedding


def make_train_step(cfg, optimizer_cfg, batch_size, ids_N):
    """step() -> loss: one AdamW step on `batch_size` random windows of the stream ids_N."""
    torch.manual_seed(0)
    model = LM(cfg.model)
    args = optimizer_cfg.args
    opt = torch.optim.AdamW(model.parameters(), lr=optimizer_cfg.learning_rate,
                            betas=(args["b1"], args["b2"]), weight_decay=args["weight_decay"])
    ids_N = torch.as_tensor(ids_N, dtype=torch.long)
    offsets = torch.arange(cfg.model.seq_len + 1)

    def step():
        starts_B = torch.randint(0, ids_N.numel() - cfg.model.seq_len, (batch_size,))
        tokens = ids_N[starts_B[:, None] + offsets]
        logits_BxLxV = model(tokens[:, :-1])
        loss = F.cross_entropy(logits_BxLxV.reshape(-1, cfg.model.vocab_size), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimizer_cfg.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), optimizer_cfg.clip_norm)
        opt.step()
        return loss

    return step
