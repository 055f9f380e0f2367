"""Window arithmetic shared by the convolution and pooling kernels (NHWC).

- ``out_and_pad``/``geometry``: output sizes and TF's padding.
- ``tap_range``: which outputs a window tap reaches inside the unpadded input.
- ``windows``: a strided (N, Ho, Wo, kh, kw, C) view of every window, for
  im2col with one contiguous copy.
- ``Phases``: the input rearranged once (space-to-depth by the stride,
  padding written in) so that every tap reads ONE contiguous run per image;
  numpy then works on long runs instead of C-sized chunks, at the price of
  a few scratch output columns per row, computed and cropped.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def out_and_pad(n: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """Output length and padding before the input for one spatial axis.

    'same' pads as TensorFlow does: the odd extra sample goes after the input.
    'causal' pads only before the input.
    """
    span = (k - 1) * d + 1
    if padding == "valid":
        return max((n - span) // s + 1, 0), 0
    out = -(-n // s)
    if padding == "causal":
        return out, span - 1
    total = max((out - 1) * s + span - n, 0)
    return out, total // 2


def geometry(x: np.ndarray, kernel, strides, dilation, padding: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Output (height, width) and padding (top, left) of a 2-D window over NHWC x."""
    (ho, pt), (wo, pl) = (
        out_and_pad(n, k, s, d, padding) for n, k, s, d in zip(x.shape[1:3], kernel, strides, dilation, strict=True)
    )
    return (ho, wo), (pt, pl)


def tap_range(n_in: int, n_out: int, s: int, offset: int) -> tuple[int, int, slice]:
    """Outputs ``[lo, hi)`` whose sample ``o * s + offset`` lies in ``[0, n_in)``,
    and the input slice they read."""
    lo = max(0, -(offset // s))
    hi = min(n_out, (n_in - 1 - offset) // s + 1)
    if hi <= lo:
        return lo, lo, slice(0, 0)
    start = lo * s + offset
    return lo, hi, slice(start, start + (hi - lo - 1) * s + 1, s)


def windows(x, ksize, strides, dilation, pad, out_hw) -> np.ndarray:
    """Read-only (N, Ho, Wo, kh, kw, C) view of every window of NHWC x, zero padding included."""
    n, h, w, c = x.shape
    need = [(o - 1) * s + (k - 1) * d + 1 for o, k, s, d in zip(out_hw, ksize, strides, dilation, strict=True)]
    if any(pad) or need[0] > h or need[1] > w:
        xp = np.zeros((n, need[0], need[1], c), x.dtype)
        rows, cols = min(h, need[0] - pad[0]), min(w, need[1] - pad[1])
        xp[:, pad[0]:pad[0] + rows, pad[1]:pad[1] + cols] = x[:, :rows, :cols]
        x = xp
    sn, sh, sw, sc = x.strides
    return as_strided(x, (n, *out_hw, *ksize, c),
                      (sn, sh * strides[0], sw * strides[1], sh * dilation[0], sw * dilation[1], sc), writeable=False)


class Phases:
    """NHWC x rearranged so that each kernel tap reads long contiguous runs.

    Phase (pi, pj) of the stride holds input rows pi, pi + sh, ... and columns
    pj, pj + sw, ... (padding written in) as an image of ``rows x width``
    pixels; a tap then reads, for every image, ONE run of ``size = out_h *
    width`` pixels starting at a fixed offset. Output pixel (r, w) is at run
    position r * width + w for w < out_w; positions with w >= out_w are
    scratch, to be cropped. The batch is folded into the run, stored as
    (phase, N * rows * width + slack, C), with slack at the end so that
    shifted runs stay in bounds; a tap is (N, size, C).
    """

    def __init__(self, x, kernel, strides, dilation, pad, out_hw):
        n, h, w, c = x.shape
        (sh, sw), (dh, dw) = strides, dilation
        self.reach = (kernel[1] - 1) * dw // sw
        self.rows = out_hw[0] + (kernel[0] - 1) * dh // sh
        self.width = out_hw[1] + self.reach
        self.size = out_hw[0] * self.width
        self.n, self.strides, self.dilation = n, (sh, sw), (dh, dw)
        run = n * self.rows * self.width
        slack = (self.rows - out_hw[0]) * self.width + self.reach  # the largest tap offset
        shape = (sh * sw, run + slack, c)
        spans = [[tap_range(size, out, s, p - before) for p in range(s)]
                 for size, out, s, before in ((h, self.rows, sh, pad[0]), (w, self.width, sw, pad[1]))]
        covered = all(r[:2] == (0, self.rows) for r in spans[0]) and all(q[:2] == (0, self.width) for q in spans[1])
        if covered:  # no padding to write: only the slack needs zeros
            self.buf = np.empty(shape, x.dtype)
            self.buf[:, run:] = 0
        else:
            self.buf = np.zeros(shape, x.dtype)
        for pi, (r0, r1, rs) in enumerate(spans[0]):
            for pj, (c0, c1, cs) in enumerate(spans[1]):
                p = pi * sw + pj
                image = self.buf[p, :run].reshape(n, self.rows, self.width, c)
                image[:, r0:r1, c0:c1] = x[:, rs, cs]

    def tap(self, i: int, j: int) -> np.ndarray:
        """The (N, size, C) run of tap (i, j)."""
        a, pi = divmod(i * self.dilation[0], self.strides[0])
        b, pj = divmod(j * self.dilation[1], self.strides[1])
        start = a * self.width + b
        stop = start + self.n * self.rows * self.width
        run = self.buf[pi * self.strides[1] + pj, start:stop]
        return run.reshape(self.n, self.rows * self.width, run.shape[-1])[:, :self.size]
