"""Run a MAEST ``ASTForAudioClassification`` the way musicmap needs it.

Our own forward over transformers' modules, because MAEST inference needs three things the
stock ``forward`` cannot do:

- **inputs shorter than ``max_length``** (a track shorter than one window): the positional grid
  is sliced to the first time columns, as MAEST does, instead of zero-padding the input
  (spec §4, "Input length");
- **only the blocks the embedding needs**: block 7 of 12 when no style predictions are wanted;
- **inference-time patchout**: dropping evenly spaced time columns of patches (the MAEST paper
  reports faster inference at little cost).

With full-length input, all blocks and no patchout it equals ``model(input_values,
output_hidden_states=True)`` (tested).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cpu import keep_freed_memory

logger = logging.getLogger(__name__)

POOLINGS = ("stack", "cls", "pooled")
PRECISIONS = ("fp32", "int8", "bf16", "fp16")


@dataclass(frozen=True)
class RunOptions:
    """How to run the model.

    Parameters
    ----------
    layer : int
        Which ``hidden_states`` index feeds the embedding (7 = the output of block 7).
    pooling : {"stack", "cls", "pooled"}
        ``stack``: [CLS, DIST, mean of patch tokens] of ``hidden_states[layer]`` (3 × hidden);
        ``cls``: the CLS token of ``hidden_states[layer]``; ``pooled``: (CLS + DIST) / 2 after the
        final LayerNorm, the classifier's input (all blocks run, ``layer`` is ignored).
    styles : bool
        Also compute the classifier's style activations (runs all blocks).
    patchout : float
        Share of time columns of patches dropped at inference (0 = none).
    precision : {"fp32", "int8", "bf16", "fp16"}
        int8 = dynamic int8 Linear layers (CPU, :mod:`indexer.maest.int8`); bf16 (CPUs with native
        bf16, CUDA); fp16 (CUDA). ``auto`` is resolved before (:func:`indexer.cpu.auto_precision`).
    """

    layer: int = 7
    pooling: str = "stack"
    styles: bool = True
    patchout: float = 0.0
    precision: str = "fp32"


def _can_shortcut(block: Any) -> bool:
    attention = getattr(block, "attention", None)
    return all(hasattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj"))


def _last_block_cls_dist(block: Any, h: Any, n_heads: int, *, cpu_bf16: bool = False) -> Any:
    """The last block, computed for the CLS and DIST rows only.

    After the last block only CLS and DIST are read (final LayerNorm → (CLS + DIST)/2 →
    classifier), so their queries attend to all keys/values and the other rows are skipped:
    the result for those two rows is the same as the full block's, for about a tenth of its cost.
    ``cpu_bf16``: the attention is :func:`_cpu_bf16_attention`, as in the other blocks (torch's
    fused CPU attention would hand oneDNN's AMX kernels GEMMs with any K: see there).

    Returns
    -------
    Tensor, shape (b, 2, D)
    """
    import torch.nn.functional as F

    att = block.attention
    b, n, d = h.shape
    head = d // n_heads
    x = block.layernorm_before(h)
    q = att.q_proj(x[:, :2]).view(b, 2, n_heads, head).transpose(1, 2)
    k = att.k_proj(x).view(b, n, n_heads, head).transpose(1, 2)
    v = att.v_proj(x).view(b, n, n_heads, head).transpose(1, 2)
    if cpu_bf16:
        a = _cpu_bf16_attention(None, q, k, v, None)[0].reshape(b, 2, d)
    else:
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, 2, d)
    y = att.o_proj(a) + h[:, :2]
    return block.mlp(block.layernorm_after(y)) + y


CPU_BF16_ATTENTION = "musicmap_cpu_bf16"
"""The attention transformers runs when MAEST runs in bf16 on a CPU (registered on first use)."""


GEMM_K_MULTIPLE = 32
"""The contraction length (K) of each GEMM :func:`_cpu_bf16_attention` hands to torch is padded with
zeros to a multiple of this: 32 bf16 values are one row of an AMX tile (64 bytes)."""


def _padded(size: int) -> int:
    return -(-size // GEMM_K_MULTIPLE) * GEMM_K_MULTIPLE


def _cpu_bf16_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                        scaling: float | None = None, **_: Any) -> tuple[Any, None]:
    """Attention as two bf16 GEMMs around a softmax, one head of one window at a time.

    torch's fused CPU attention (SDPA's flash kernel) runs no faster in bf16 than in fp32 (154 vs
    162 GFLOP/s for a 30-s window's 1,685 tokens, 12 heads, on a 2-core AVX-512 BF16 machine, where a
    bf16 GEMM reaches 400): in bf16 it was 47 % of MAEST's time. Here a head of a window at a time:
    two ``torch.mm`` around a softmax (378 GFLOP/s for the products in MAEST, profiled 2026-11-30),
    the head's 1,685² score matrix (5.7 MB) staying in cache through the softmax. Batched over the
    heads (``bmm``) ran as fast inside MAEST (an A/B in one process: 1.27–1.35 vs 1.31–1.36 windows/s
    embed-only) but holds a window's 68 MB of scores (and, in isolation, ran at half the speed on q,
    k, v viewed from one fused projection, a layout MAEST's separate projections do not have). The
    softmax is taken in
    bf16 (per-element error ≤ 4e-3; the track vectors' cosine to fp32 is in the README's table).
    The int8 mode uses it too on CPUs with native bf16 (its projections come out in fp32).

    **K padded to a multiple of 32** (:data:`GEMM_K_MULTIPLE`), a guard against oneDNN issue #5717
    (uxlfoundation/oneDNN; fixed by PR #5723 in August 2026, after the oneDNN 3.12.0 that torch
    2.13's CPU wheel bundles): its AMX bf16 matmul kernel (``brg_matmul:avx10_1_512_amx``, what a
    bf16 ``torch.mm`` with m·n·k > 16³ runs on Xeons with ``amx_bf16``) reads A's last, partial
    32-wide K tile whole and relies on zeros in B to cancel the columns past K; those bytes belong
    to A's next rows (only the last tile of rows was zero-padded), and where they hold NaN or
    infinity, NaN · 0 = NaN leaks into clean output rows. Both products here have a K of our
    choosing: q·kᵀ the head size (64 in MAEST, 16 in the tests' tiny model), p·v the number of
    tokens (11 for a 0.3-s clip, 164 for 3 s, 1,685 for a 30-s window). So q and k get zero
    columns up to a multiple of 32 (they add 0 to every score), k and v zero rows up to a
    multiple of 32 tokens, and the scores of those padding keys are set to -inf before the
    softmax (probability exactly 0, so v's zero rows add nothing): the output is the unpadded
    products' to bf16 rounding (bit-equal for the short shapes tried), and the kernel gets no K
    tail to over-read. MAEST's other bf16 GEMMs, its Linear layers, have K = 768 or 3072 (32 or 64
    in the tiny model) already. How it was checked, on an AVX-512 BF16 CPU without AMX (the NaN
    for short clips on AMX CPUs could not be reproduced here): ``ONEDNN_VERBOSE=1`` lists the
    products that reach oneDNN's matmul and their K (full-size MAEST, 0.3-s clip, before:
    ``11x11:11x64``, K = 11; 3 s: K = 164; after: 32 and 192), and a test asserts K % 32 == 0
    for every bf16 product MAEST asks torch for (``tests/indexer/test_maest_attention.py``).
    Whether this bug is what made those vectors NaN is not established: in the tiny model a
    0.3-s clip's attention products (m·n·k ≤ 16³) never reach oneDNN's matmul at all. What
    guarantees that no non-finite vector is stored is :mod:`indexer.finite`. Cost: up to 31 more
    keys per window (11 of 1,685 at 30 s) and a copy of k and v per window.

    Shapes: query (b, heads, n_q, d), key and value (b, heads, n, d) → output (b, n_q, heads, d),
    as transformers expects (n_q = n but in the last block's shortcut, where it is 2).
    """
    import torch

    if attention_mask is not None:
        raise ValueError("the bf16 CPU attention takes no mask (MAEST has none)")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    batch, heads, n_q, d = query.shape
    n = key.shape[2]
    n_pad, d_pad = _padded(n), _padded(d)
    bf16, device = torch.bfloat16, query.device
    out = torch.empty(batch, n_q, heads, d, dtype=bf16, device=device)
    # Zero-padded buffers, filled per window (fp32 inputs, the int8 mode's projections, are
    # converted to bf16 by the copy); the padding stays zero.
    q = torch.zeros(heads, n_q, d_pad, dtype=bf16, device=device)
    k = torch.zeros(heads, n_pad, d_pad, dtype=bf16, device=device)
    v = torch.zeros(heads, n_pad, d, dtype=bf16, device=device)
    for i in range(batch):
        torch.mul(query[i], scale, out=q[..., :d])
        k[:, :n, :d] = key[i]
        v[:, :n] = value[i]
        for h in range(heads):
            scores = torch.mm(q[h], k[h].T)  # (n_q, n_pad); K = d_pad
            if n_pad > n:
                scores[:, n:] = float("-inf")  # padding keys: probability 0
            out[i, :, h] = torch.mm(torch.softmax(scores, dim=-1), v[h])  # K = n_pad
    return out.to(query.dtype), None


def use_cpu_bf16_attention(model: Any) -> None:
    """Make ``model`` (transformers) run :func:`_cpu_bf16_attention`."""
    from transformers import AttentionInterface

    AttentionInterface.register(CPU_BF16_ATTENTION, _cpu_bf16_attention)
    model.config._attn_implementation = CPU_BF16_ATTENTION
    for sub in model.modules():  # sub-configs keep their own copy of the setting
        config = getattr(sub, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = CPU_BF16_ATTENTION


def embedding_dimension(hidden: int, pooling: str) -> int:
    return 3 * hidden if pooling == "stack" else hidden


class MaestRunner:
    """Wraps a loaded ``ASTForAudioClassification``; :meth:`run` maps windows to vectors."""

    def __init__(self, model: Any, options: RunOptions, device: str) -> None:
        import torch

        config = model.config
        n_layers = int(config.num_hidden_layers)
        if options.pooling not in POOLINGS:
            raise ValueError(f"pooling {options.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if options.precision not in PRECISIONS:
            raise ValueError(f"precision {options.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not 1 <= options.layer <= n_layers:
            raise ValueError(f"layer {options.layer}: the model has hidden_states 1..{n_layers}")
        if not 0.0 <= options.patchout < 1.0:
            raise ValueError(f"patchout {options.patchout}: give a share from 0 up to (not including) 1")
        self.options = options
        self.device = device
        self.hidden = int(config.hidden_size)
        self.n_heads = int(config.num_attention_heads)
        self.n_freq = (int(config.num_mel_bins) - int(config.patch_size)) // int(config.frequency_stride) + 1
        self.max_length = int(config.max_length)
        self.all_blocks = options.styles or options.pooling == "pooled"
        self.n_blocks = n_layers if self.all_blocks else options.layer
        self.dtype = torch.float32
        self.patch_fp32: Any = None
        """The patch embedding in fp32 where the rest runs in bf16 on the CPU (see below), else None."""
        self.cpu_bf16_attention = False
        """The blocks run :func:`_cpu_bf16_attention` (bf16, or int8 on a native-bf16 CPU): the last
        block's shortcut runs it too."""
        if device == "cpu":
            keep_freed_memory()  # large temporaries reused, not page-faulted afresh each call (indexer.cpu)
        model.eval()
        if options.precision == "int8":
            if device != "cpu":
                raise ValueError("precision int8 (dynamic quantisation) runs on the CPU only")
            from ..cpu import native_bf16
            from .int8 import quantize_linears  # our own: torch.ao's dynamic quantisation is deprecated

            model = quantize_linears(model)
            if native_bf16():  # attention is no int8 GEMM: bf16 where the CPU has it (see below)
                use_cpu_bf16_attention(model)
                self.cpu_bf16_attention = True
        elif options.precision in ("bf16", "fp16"):
            self.dtype = torch.bfloat16 if options.precision == "bf16" else torch.float16
            if device == "cpu" and options.precision == "bf16":
                # The patch embedding stays fp32 (one small conv a window): oneDNN's bf16 conv on AMX
                # CPUs returns garbage (|x| ~ 1e34, then NaN) when the output is one patch wide, i.e.
                # a window of 16-25 frames (a clip under about 0.4 s). Measured on a Xeon with
                # amx_bf16, torch 2.13: benchmarks/probe_bf16_nan.py (issue #29's NaN, found in #30).
                self.patch_fp32 = copy.deepcopy(model.audio_spectrogram_transformer.embeddings.patch_embeddings)
            model = model.to(self.dtype)
            if device == "cpu" and options.precision == "bf16":
                use_cpu_bf16_attention(model)
                self.cpu_bf16_attention = True
        self.model = model.to(device)

    @property
    def dimension(self) -> int:
        return embedding_dimension(self.hidden, self.options.pooling)

    def _kept_columns(self, n_time: int) -> np.ndarray:
        keep = max(1, round(n_time * (1.0 - self.options.patchout)))
        return np.unique(np.round(np.linspace(0, n_time - 1, keep)).astype(int))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Embed windows of equal length.

        Parameters
        ----------
        batch : ndarray, shape (b, t, 96), float32, normalised; 16 ≤ t ≤ max_length

        Returns
        -------
        embeddings : ndarray, shape (b, dimension), float32
        activations : ndarray, shape (b, num_labels), float32, or None without styles
        """
        import torch

        ast = self.model.audio_spectrogram_transformer
        emb = ast.embeddings
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.patch_fp32 is not None:
                patches = self.patch_fp32(x).to(self.dtype)  # (b, F·T', D), frequency-major
            else:
                patches = emb.patch_embeddings(x.to(self.dtype))
            b, n, d = patches.shape
            n_time = n // self.n_freq
            pos = emb.position_embeddings  # (1, 2 + F·T_slots, D)
            slots = (pos.shape[1] - 2) // self.n_freq
            if n_time > slots:
                raise ValueError(f"window of {batch.shape[1]} frames is longer than the model's "
                                 f"{self.max_length}")
            grid = pos[:, 2:].reshape(1, self.n_freq, slots, d)[:, :, :n_time]  # slice time slots
            tokens = (patches.reshape(b, self.n_freq, n_time, d) + grid)
            if self.options.patchout > 0:
                cols = torch.from_numpy(self._kept_columns(n_time)).to(self.device)
                tokens = tokens.index_select(2, cols)
            tokens = tokens.reshape(b, -1, d)
            cls = emb.cls_token.expand(b, -1, -1) + pos[:, :1]
            dist = emb.distillation_token.expand(b, -1, -1) + pos[:, 1:2]
            h = torch.cat([cls, dist, tokens], dim=1)  # (b, 2 + patches, D)
            picked = None
            # transformers 5 names the blocks `layers` and returns a tensor; 4.x used
            # `encoder.layer` and returned a tuple.
            blocks = ast.layers if hasattr(ast, "layers") else ast.encoder.layer
            for i in range(self.n_blocks):
                if i == len(blocks) - 1 and self.options.layer < len(blocks) and _can_shortcut(blocks[i]):
                    h = _last_block_cls_dist(blocks[i], h, self.n_heads,  # only CLS/DIST are read
                                             cpu_bf16=self.cpu_bf16_attention)
                else:
                    out = blocks[i](h, None)
                    h = out[0] if isinstance(out, tuple) else out
                if i + 1 == self.options.layer:
                    picked = h
            logits = None
            pooled = None
            if self.all_blocks:
                final = ast.layernorm(h)
                pooled = (final[:, 0] + final[:, 1]) / 2
                if self.options.styles:
                    logits = self.model.classifier(pooled)
            if self.options.pooling == "pooled":
                assert pooled is not None
                vec = pooled
            else:
                assert picked is not None
                if self.options.pooling == "cls":
                    vec = picked[:, 0]
                else:
                    vec = torch.cat([picked[:, 0], picked[:, 1], picked[:, 2:].mean(dim=1)], dim=-1)
            embeddings = vec.float().cpu().numpy()
            activations = torch.sigmoid(logits).float().cpu().numpy() if logits is not None else None
        return embeddings, activations
