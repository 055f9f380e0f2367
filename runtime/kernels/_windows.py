"""Window arithmetic shared by the convolution and pooling kernels.

Two ways to walk a sliding window over NHWC data, one kernel tap at a time
(a loop over kh*kw, never over batch items or pixels):

- ``taps`` gives, per tap, the output positions whose input sample lies in
  the unpadded input and the strided input slice they read; padding is never
  materialised.
- ``to_phases`` rearranges the input once (space-to-depth by the stride, with
  the padding written in) so that every tap reads ONE contiguous run per
  image: numpy then copies or multiplies long runs instead of C-sized chunks.
  The price is ``reach`` extra output columns per row, computed and cropped.
"""

from __future__ import annotations

import numpy as np


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


def taps(in_hw, out_hw, kernel, strides, dilation, pad):
    """Yield ``(i, j, out_rows, out_cols, in_rows, in_cols)`` for every tap of a
    2-D window; ``out_*`` are ``(lo, hi)`` ranges, ``in_*`` slices."""
    for i in range(kernel[0]):
        r0, r1, rs = tap_range(in_hw[0], out_hw[0], strides[0], i * dilation[0] - pad[0])
        for j in range(kernel[1]):
            c0, c1, cs = tap_range(in_hw[1], out_hw[1], strides[1], j * dilation[1] - pad[1])
            yield i, j, (r0, r1), (c0, c1), rs, cs


def is_full(rows: tuple[int, int], cols: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    return rows == (0, out_hw[0]) and cols == (0, out_hw[1])


class Phases:
    """x (..., H, W, C) rearranged so that each tap reads one contiguous run.

    ``buf`` has shape (..., sh, sw, run, C): phase image (pi, pj) holds input
    rows pi, pi + sh, ... and columns pj, pj + sw, ... (padding included), as
    ``rows x width`` pixels flattened, plus slack so that shifted runs stay in
    bounds. ``tap(i, j)`` is the (..., out_h * width, C) run of tap (i, j):
    output (r, w) of the window sits at run position r * width + w, for
    w < out_w; positions w >= out_w are scratch.
    """

    def __init__(self, x, kernel, strides, dilation, pad, out_hw, fill: float = 0.0):
        *lead, h, w, c = x.shape
        (sh, sw), (dh, dw) = strides, dilation
        self.reach = (kernel[1] - 1) * dw // sw
        rows = out_hw[0] + (kernel[0] - 1) * dh // sh
        self.width = out_hw[1] + self.reach
        self.size = out_hw[0] * self.width
        self.strides, self.dilation = (sh, sw), (dh, dw)
        shape = (*lead, sh, sw, rows * self.width + self.reach, c)
        self.buf = np.zeros(shape, x.dtype) if fill == 0 else np.full(shape, fill, x.dtype)
        for pi in range(sh):
            r0, r1, rs = tap_range(h, rows, sh, pi - pad[0])
            for pj in range(sw):
                c0, c1, cs = tap_range(w, self.width, sw, pj - pad[1])
                image = self.buf[..., pi, pj, :rows * self.width, :].reshape(*lead, rows, self.width, c)
                image[..., r0:r1, c0:c1, :] = x[..., rs, cs, :]

    def tap(self, i: int, j: int) -> np.ndarray:
        a, pi = divmod(i * self.dilation[0], self.strides[0])
        b, pj = divmod(j * self.dilation[1], self.strides[1])
        start = a * self.width + b
        return self.buf[..., pi, pj, start:start + self.size, :]
