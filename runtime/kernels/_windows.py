"""Window arithmetic shared by the convolution and pooling kernels.

A sliding window is walked one kernel tap at a time: for each tap, the output
positions whose input sample lies inside the (unpadded) input form a
contiguous range, and the samples they read form a strided slice. Padding is
therefore never materialised; callers fill the positions outside the range
with the padding value (zero, or -inf for max pooling).
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


def tap_range(n_in: int, n_out: int, s: int, offset: int) -> tuple[int, int, slice]:
    """Outputs ``[lo, hi)`` whose sample ``o * s + offset`` lies in ``[0, n_in)``,
    and the input slice they read."""
    lo = max(0, -(offset // s))
    hi = min(n_out, (n_in - 1 - offset) // s + 1)
    if hi <= lo:
        return lo, lo, slice(0, 0)
    start = lo * s + offset
    return lo, hi, slice(start, start + (hi - lo - 1) * s + 1, s)


def taps(
    in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: tuple[int, int],
    strides: tuple[int, int], dilation: tuple[int, int], pad: tuple[int, int],
):
    """Yield ``(i, j, out_rows, out_cols, in_rows, in_cols)`` for every tap of a
    2-D window; ``out_*`` are ``(lo, hi)`` ranges, ``in_*`` slices."""
    for i in range(kernel[0]):
        r0, r1, rs = tap_range(in_hw[0], out_hw[0], strides[0], i * dilation[0] - pad[0])
        for j in range(kernel[1]):
            c0, c1, cs = tap_range(in_hw[1], out_hw[1], strides[1], j * dilation[1] - pad[1])
            yield i, j, (r0, r1), (c0, c1), rs, cs


def fill_outside(dst: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], value: float) -> None:
    """Set ``dst[:, r, c]`` to value wherever (r, c) is outside rows x cols."""
    (r0, r1), (c0, c1) = rows, cols
    if r0 > 0:
        dst[:, :r0] = value
    if r1 < dst.shape[1]:
        dst[:, r1:] = value
    if c0 > 0:
        dst[:, r0:r1, :c0] = value
    if c1 < dst.shape[2]:
        dst[:, r0:r1, c1:] = value


def is_full(rows: tuple[int, int], cols: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    return rows == (0, out_hw[0]) and cols == (0, out_hw[1])


def windows_2d(
    x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int],
    padding: str,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Output height/width and padding (top, left) of a 2-D window over NHWC x."""
    (ho, pt), (wo, pl) = (
        out_and_pad(n, k, s, d, padding) for n, k, s, d in zip(x.shape[1:3], kernel, strides, dilation, strict=True)
    )
    return (ho, wo), (pt, pl)
