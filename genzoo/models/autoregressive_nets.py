"""The four networks of the autoregressive family (genzoo/models/autoregressive.py holds the model, its
likelihood, sampler and completion). Each maps an image to logits of p(x_p | x_<p) at every position p,
where the order is raster order over pixels and R -> G -> B within a pixel:

  forward(x, y) -> (B, C * K, H, W)      x (B, C, H, W) in [-1, 1]; the K logits of channel c are
                                          channels c K .. c K + K - 1; y (B,) class labels or None
  start(xp) -> cache                      empty per-layer buffers for sampling one position at a time
  step(xp, cache, i, j, c, y) -> (B, C K) the same logits at pixel (i, j) only, reading inputs from the
                                          padded image xp (B, C, PAD + H, W + 2 PAD) and the caches

`step` does about 1/(H W) of a forward pass, so drawing an image costs about one forward pass per
colour channel, not H W C of them. Every layer's output at a position depends only on inputs before that
position, so what the caches hold for earlier positions is final.

- PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.5 and fig. 5): a 7x7
  mask-A convolution, residual blocks [ReLU, 1x1 (2h -> h), ReLU, 3x3 mask B, ReLU, 1x1 (h -> 2h)],
  then ReLU, 1x1, ReLU, 1x1 output layers. Its receptive field has the blind spot up and to the right.
- Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders",
  eq. 2-4, fig. 2): a vertical stack that sees the rows above and a horizontal stack that sees the current
  row to the left, y = tanh(W_f * x + V_f^T h) . sigmoid(W_g * x + V_g^T h), the vertical stack's
  pre-activations fed to the horizontal one through a 1x1 convolution, a residual 1x1 in the horizontal
  stack. The vertical stack of the first layer is shifted down one row, so nothing is blind.
- Row LSTM (PixelRNN paper, sec. 3.1, eq. 3): [o, f, i, g] = sigma(K_ss (*) h_{i-1} + K_is (*) x_i),
  c_i = f . c_{i-1} + i . g, h_i = o . tanh(c_i), one image row i per recurrence step; K_is is a
  masked (1 x 3) convolution along the row (the paper's "k x 1" kernel), K_ss a 1D convolution of width 3
  over the previous row's state; a 7x7 mask-A convolution first, residual connections between layers.
- Pixel transformer: a decoder-only transformer (pre-LN blocks, learned position embeddings, causal
  self-attention) over the H W pixels in raster order; token t carries pixel t - 1. Sampling keeps each
  layer's keys and values (a KV cache).

Colour channels: the convolutional networks split their feature maps into C groups with masks that let
group c see channels < c of the current pixel (mask A) or <= c (mask B); gates act within a group. The
transformer's tokens see whole earlier pixels; its output layers add the current pixel's earlier channels
through a mask-A 1x1 convolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import MaskedConv2d

PAD = 4     # rows above and columns each side of the padded buffers (the gated first layer reads 4 rows up)


def buffer(like: torch.Tensor, channels: int, h: int, w: int) -> torch.Tensor:
    """Zeros (B, channels, PAD + h, w + 2 PAD) in the dtype and device of ``like``: pixel (i, j) at [PAD + i, PAD + j]."""
    return like.new_zeros(like.shape[0], channels, PAD + h, w + 2 * PAD)


def window(buf: torch.Tensor, i: int, j: int, up: int, side: int) -> torch.Tensor:
    """Rows i - up .. i and columns j - side .. j + side of a padded buffer: (B, C, up + 1, 2 side + 1)."""
    return buf[:, :, PAD + i - up:PAD + i + 1, PAD + j - side:PAD + j + side + 1]


def round_up(n: int, groups: int) -> int:
    return -(-n // groups) * groups


def gate(t: torch.Tensor, groups: int) -> torch.Tensor:
    """tanh(a) * sigmoid(b) with a, b the two halves of each colour group: (B, 2w, ...) -> (B, w, ...)."""
    a, b = t.unflatten(1, (groups, 2, -1)).unbind(2)
    return (torch.tanh(a) * torch.sigmoid(b)).flatten(1, 2)


def class_bias(emb: nn.Embedding | None, y: torch.Tensor | None, ndim: int = 4):
    """The conditioning bias V^T h of a one-hot label: (B, n) broadcast over positions, or 0."""
    if emb is None:
        return 0.0
    b = emb(y)
    return b.view(*b.shape, *([1] * (ndim - 2)))


class Head(nn.Module):
    """The output layers: ReLU, 1x1 mask B, ReLU, 1x1 mask B to K logits per colour channel."""

    def __init__(self, width: int, channels: int, k_out: int):
        super().__init__()
        self.hidden = MaskedConv2d(width, width, 1, "B", channels)
        self.out = MaskedConv2d(width, channels * k_out, 1, "B", channels)

    def forward(self, h):                                         # (B, w, H, W) -> (B, C K, H, W)
        return self.out(F.relu(self.hidden(F.relu(h))))


class PixelCNNBlock(nn.Module):
    def __init__(self, width: int, mid: int, groups: int, num_classes: int):
        super().__init__()
        self.down = MaskedConv2d(width, mid, 1, "B", groups)
        self.conv = MaskedConv2d(mid, mid, 3, "B", groups)
        self.up = MaskedConv2d(mid, width, 1, "B", groups)
        self.emb = nn.Embedding(num_classes, mid) if num_classes else None

    def pre(self, h, y):                                          # the 3x3 convolution's input
        return F.relu(self.down(F.relu(h)) + class_bias(self.emb, y, h.ndim))

    def forward(self, h, y):
        return h + self.up(F.relu(self.conv(self.pre(h, y))))

    def step(self, h, buf, i, j, y):                              # h (B, w, 1, 1) at (i, j)
        buf[:, :, PAD + i, PAD + j] = self.pre(h, y)[:, :, 0, 0]
        return h + self.up(F.relu(self.conv(window(buf, i, j, 1, 1), valid=True)))


class PixelCNN(nn.Module):
    def __init__(self, cfg, k_out: int):
        super().__init__()
        c, ncls = cfg.channels, cfg.num_classes if cfg.conditional else 0
        w = round_up(cfg.width, c)
        self.mid = round_up(max(1, w // 2), c)
        self.conv_in = MaskedConv2d(c, w, 7, "A", c)
        self.blocks = nn.ModuleList(PixelCNNBlock(w, self.mid, c, ncls) for _ in range(cfg.res_blocks))
        self.head = Head(w, c, k_out)

    def forward(self, x, y):
        h = self.conv_in(x)                                       # (B, w, H, W)
        for blk in self.blocks:
            h = blk(h, y)
        return self.head(h)

    def start(self, xp):
        h, w = xp.shape[2] - PAD, xp.shape[3] - 2 * PAD
        return [buffer(xp, self.mid, h, w) for _ in self.blocks]

    def step(self, xp, cache, i, j, c, y):
        h = self.conv_in(window(xp, i, j, 3, 3), valid=True)      # (B, w, 1, 1)
        for blk, buf in zip(self.blocks, cache):
            h = blk.step(h, buf, i, j, y)
        return self.head(h).flatten(1)


class GatedLayer(nn.Module):
    def __init__(self, c_in: int, width: int, k: int, first: bool, groups: int, num_classes: int):
        super().__init__()
        self.k, self.first, self.groups = k, first, groups
        self.v_conv = nn.Conv2d(c_in, 2 * width, (k // 2 + 1, k))           # vertical: rows above
        self.h_conv = MaskedConv2d(c_in, 2 * width, (1, k), "A" if first else "B", groups)
        self.link = nn.Conv2d(2 * width, 2 * width, 1)                       # vertical -> horizontal
        self.h_out = MaskedConv2d(width, width, 1, "B", groups)
        self.emb = nn.Embedding(num_classes, 4 * width) if num_classes else None

    def biases(self, y, ndim: int):
        """The class biases V^T h of the vertical and horizontal pre-activations (each (B, 2w, 1...) or 0)."""
        return class_bias(self.emb, y, ndim).chunk(2, 1) if self.emb is not None else (0.0, 0.0)

    def forward(self, v, h, y):
        H, k = v.shape[2], self.k
        # the first layer reads image rows i - k//2 - 1 .. i - 1, later ones rows i - k//2 .. i of a vertical
        # stack that already sees only rows above its own: either way row i sees rows < i
        top = k // 2 + 1 if self.first else k // 2
        vp = self.v_conv(F.pad(v, (k // 2, k // 2, top, 0)))[:, :, :H]                  # (B, 2w, H, W)
        bias_v, bias_h = self.biases(y, v.ndim)
        h_new = self.h_out(gate(self.h_conv(h) + self.link(vp) + bias_h, self.groups))
        return gate(vp + bias_v, self.groups), (h_new if self.first else h + h_new)

    def step_row(self, vbuf, i, y):
        """The vertical stack at row i from its padded input buffer: pre-activations (B, 2w, W) and output (B, w, W)."""
        k, W = self.k, vbuf.shape[3] - 2 * PAD
        top = PAD + i - (k // 2 + 1 if self.first else k // 2)
        vp = self.v_conv(vbuf[:, :, top:top + k // 2 + 1, PAD - k // 2:PAD + W + k // 2])[:, :, 0]
        return vp, gate(vp + self.biases(y, 3)[0], self.groups)

    def step(self, vp_ij, hbuf, i, j, y):
        """The horizontal stack at (i, j): (B, w), from the vertical pre-activation there (B, 2w)."""
        hp = self.h_conv(window(hbuf, i, j, 0, self.k // 2), valid=True)[:, :, 0, 0] + \
            self.link(vp_ij[:, :, None, None])[:, :, 0, 0] + self.biases(y, 2)[1]
        h_new = self.h_out(gate(hp, self.groups)[:, :, None, None])[:, :, 0, 0]
        return h_new if self.first else hbuf[:, :, PAD + i, PAD + j] + h_new


class GatedPixelCNN(nn.Module):
    def __init__(self, cfg, k_out: int):
        super().__init__()
        c, ncls = cfg.channels, cfg.num_classes if cfg.conditional else 0
        self.w = round_up(cfg.width, c)
        self.layers = nn.ModuleList(GatedLayer(c if n == 0 else self.w, self.w, 7 if n == 0 else 3, n == 0, c, ncls)
                                    for n in range(cfg.res_blocks))
        self.head = Head(self.w, c, k_out)

    def forward(self, x, y):
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.head(h)

    def start(self, xp):
        # input buffers of layers 1.. (layer 0 reads the image), vertical pre-activations of the current row
        h, w = xp.shape[2] - PAD, xp.shape[3] - 2 * PAD
        return {"v": [buffer(xp, self.w, h, w) for _ in self.layers[1:]],
                "h": [buffer(xp, self.w, h, w) for _ in self.layers[1:]], "vp": [None] * len(self.layers)}

    def step(self, xp, cache, i, j, c, y):
        vbufs, hbufs = [xp, *cache["v"]], [xp, *cache["h"]]
        if j == 0 and c == 0:            # a new row: the vertical stack sees only rows above, so do all of it
            for n, layer in enumerate(self.layers):
                cache["vp"][n], v = layer.step_row(vbufs[n], i, y)                       # (B, 2w, W), (B, w, W)
                if n + 1 < len(self.layers):
                    vbufs[n + 1][:, :, PAD + i, PAD:-PAD] = v
        for n, layer in enumerate(self.layers):
            h = layer.step(cache["vp"][n][:, :, j], hbufs[n], i, j, y)           # (B, w)
            if n + 1 < len(self.layers):
                hbufs[n + 1][:, :, PAD + i, PAD + j] = h
        return self.head(h[:, :, None, None]).flatten(1)


class RowLSTMLayer(nn.Module):
    def __init__(self, width: int, groups: int, num_classes: int):
        super().__init__()
        self.groups = groups
        self.input_to_state = MaskedConv2d(width, 4 * width, (1, 3), "B", groups)   # K_is along the row
        self.state_to_state = nn.Conv1d(width, 4 * width, 3, padding=1)             # K_ss over row i - 1
        self.out = MaskedConv2d(width, width, 1, "B", groups)
        self.emb = nn.Embedding(num_classes, 4 * width) if num_classes else None

    def cell(self, pre, c_prev):                  # pre (B, 4w, ...) in colour groups of [o, f, i, g]
        o, f, i, g = pre.unflatten(1, (self.groups, 4, -1)).unbind(2)
        c = (torch.sigmoid(f) * c_prev.unflatten(1, (self.groups, -1)) + torch.sigmoid(i) * torch.tanh(g)).flatten(1, 2)
        return torch.sigmoid(o).flatten(1, 2) * torch.tanh(c), c

    def forward(self, x, y):                      # x (B, w, H, W)
        pre_in = self.input_to_state(x) + class_bias(self.emb, y, x.ndim)                 # (B, 4w, H, W)
        h = c = x.new_zeros(x.shape[0], x.shape[1], x.shape[3])                          # (B, w, W)
        rows = []
        for r in range(x.shape[2]):
            h, c = self.cell(pre_in[:, :, r] + self.state_to_state(h), c)
            rows.append(h)
        return x + self.out(torch.stack(rows, 2))

    def step(self, xbuf, hbuf, cbuf, i, j, y):   # -> the layer output at (i, j), (B, w)
        pre = self.input_to_state(window(xbuf, i, j, 0, 1), valid=True)[:, :, 0, 0] + class_bias(self.emb, y, 2) \
            + F.conv1d(hbuf[:, :, PAD + i - 1, PAD + j - 1:PAD + j + 2], self.state_to_state.weight,
                       self.state_to_state.bias)[:, :, 0]
        h, c = self.cell(pre, cbuf[:, :, PAD + i - 1, PAD + j])
        hbuf[:, :, PAD + i, PAD + j], cbuf[:, :, PAD + i, PAD + j] = h, c
        return xbuf[:, :, PAD + i, PAD + j] + self.out(h[:, :, None, None])[:, :, 0, 0]


class RowLSTM(nn.Module):
    def __init__(self, cfg, k_out: int):
        super().__init__()
        c, ncls = cfg.channels, cfg.num_classes if cfg.conditional else 0
        self.w = round_up(cfg.width, c)
        self.conv_in = MaskedConv2d(c, self.w, 7, "A", c)
        self.layers = nn.ModuleList(RowLSTMLayer(self.w, c, ncls) for _ in range(cfg.res_blocks))
        self.head = Head(self.w, c, k_out)

    def forward(self, x, y):
        h = self.conv_in(x)
        for layer in self.layers:
            h = layer(h, y)
        return self.head(h)

    def start(self, xp):
        h, w = xp.shape[2] - PAD, xp.shape[3] - 2 * PAD
        return [[buffer(xp, self.w, h, w) for _ in range(3)] for _ in self.layers]      # input, h, c

    def step(self, xp, cache, i, j, c, y):
        h = self.conv_in(window(xp, i, j, 3, 3), valid=True)[:, :, 0, 0]               # (B, w)
        for layer, (xbuf, hbuf, cbuf) in zip(self.layers, cache):
            xbuf[:, :, PAD + i, PAD + j] = h
            h = layer.step(xbuf, hbuf, cbuf, i, j, y)
        return self.head(h[:, :, None, None]).flatten(1)


class Block(nn.Module):
    """Pre-LN transformer block: t + attn(LN(t)), then t + MLP(LN(t)); causal, or one token with a KV cache."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, t, kv=None, pos: int = 0):               # t (B, T, d)
        b, n, d = t.shape
        q, k, v = self.qkv(self.ln1(t)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if kv is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)                 # (B, heads, T, d/heads)
        else:                                # one token at ``pos``: store its key and value, attend to <= pos
            kv[0][:, :, pos], kv[1][:, :, pos] = k[:, :, 0], v[:, :, 0]
            a = F.scaled_dot_product_attention(q, kv[0][:, :, :pos + 1], kv[1][:, :, :pos + 1])
        t = t + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return t + self.mlp(self.ln2(t))


class PixelTransformer(nn.Module):
    def __init__(self, cfg, k_out: int):
        super().__init__()
        c, d = cfg.channels, cfg.width
        self.embed = nn.Linear(c, d)                                   # a pixel's C values -> its token
        self.start_token = nn.Parameter(torch.zeros(d))                # token 0 carries no pixel
        self.pos = nn.Parameter(torch.randn(cfg.image_size ** 2, d) * 0.02)
        self.cls = nn.Embedding(cfg.num_classes, d) if cfg.conditional else None
        self.blocks = nn.ModuleList(Block(d, cfg.heads) for _ in range(cfg.res_blocks))
        self.ln_f = nn.LayerNorm(d)
        self.current = MaskedConv2d(c, d, 1, "A", c) if c > 1 else None   # channels < c of the pixel itself
        self.head = Head(d, c, k_out)

    def _out(self, h, x_here):             # h (B, d, H', W') from pixels before; x_here the pixel(s) themselves
        return self.head(h if self.current is None else h + self.current(x_here))

    def forward(self, x, y):
        b, c, H, W = x.shape
        prev = self.embed(x.flatten(2).transpose(1, 2)[:, :-1])                          # (B, HW - 1, d)
        t = torch.cat([self.start_token.expand(b, 1, -1).to(prev.dtype), prev], 1) + self.pos
        if self.cls is not None:
            t = t + self.cls(y)[:, None]                                                  # (B, 1, d)
        for blk in self.blocks:
            t = blk(t)
        h = self.ln_f(t).transpose(1, 2).reshape(b, -1, H, W)                             # (B, d, H, W)
        return self._out(h, x)

    def start(self, xp):
        b, L, d = xp.shape[0], self.pos.shape[0], self.pos.shape[1]
        heads = self.blocks[0].heads if len(self.blocks) else 1
        return {"kv": [[xp.new_zeros(b, heads, L, d // heads) for _ in range(2)] for _ in self.blocks], "h": None}

    def step(self, xp, cache, i, j, c, y):
        W = xp.shape[3] - 2 * PAD
        if c == 0:                          # the token of pixel (i, j) needs only earlier pixels: once per pixel
            p = i * W + j
            if p == 0:
                t = self.start_token.expand(xp.shape[0], -1)
            else:
                pi, pj = divmod(p - 1, W)
                t = self.embed(xp[:, :, PAD + pi, PAD + pj])
            t = (t + self.pos[p] + class_bias(self.cls, y, 2))[:, None]                   # (B, 1, d)
            for blk, kv in zip(self.blocks, cache["kv"]):
                t = blk(t, kv, p)
            cache["h"] = self.ln_f(t[:, 0])[:, :, None, None]                              # (B, d, 1, 1)
        return self._out(cache["h"], window(xp, i, j, 0, 0)).flatten(1)


NETS = {"pixelcnn": PixelCNN, "gated": GatedPixelCNN, "rowlstm": RowLSTM, "transformer": PixelTransformer}
