"""Convolution kernels (NHWC), as im2col + one GEMM over the whole batch.

The im2col matrix is built one kernel tap at a time with contiguous copies
(a loop over kh*kw, never over batch items or pixels); padding is never
materialised: positions outside the input are zero-filled in the matrix.
"""

from __future__ import annotations

import numpy as np

from runtime.kernels import kernel
from runtime.kernels._windows import fill_outside, is_full, out_and_pad, taps
from runtime.kernels.activations import apply_activation

_F32 = np.float32


def _im2col(x: np.ndarray, ksize, strides, dilation, out_hw, pad) -> np.ndarray:
    """(N, H, W, C) -> (N, Ho, Wo, kh, kw, C): every window's samples, zeros for padding."""
    n, h, w, c = x.shape
    cols = np.empty((n, *out_hw, *ksize, c), _F32)
    for i, j, rows, cs, r_in, c_in in taps((h, w), out_hw, ksize, strides, dilation, pad):
        dst = cols[:, :, :, i, j, :]
        if not is_full(rows, cs, out_hw):
            fill_outside(dst, rows, cs, 0)
        dst[:, rows[0]:rows[1], cs[0]:cs[1]] = x[:, r_in, c_in]
    return cols


def _conv2d(x, w, strides, dilation, pad, out_hw, groups=1):
    """Grouped 2-D cross-correlation of NHWC x with w (kh, kw, cin/groups, filters); no bias."""
    n, c = x.shape[0], x.shape[-1]
    kh, kw, cpg, f = w.shape
    rows = n * out_hw[0] * out_hw[1]
    if (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and groups == 1 and not any(pad):
        y = x.reshape(rows, c) @ w.reshape(c, f)
    elif groups == 1:
        y = _im2col(x, (kh, kw), strides, dilation, out_hw, pad).reshape(rows, kh * kw * c) @ w.reshape(-1, f)
    else:
        fpg = f // groups
        y = np.empty((rows, f), _F32)
        for g in range(groups):
            xg = x[..., g * cpg:(g + 1) * cpg]
            cols = _im2col(xg, (kh, kw), strides, dilation, out_hw, pad).reshape(rows, kh * kw * cpg)
            y[:, g * fpg:(g + 1) * fpg] = cols @ w[..., g * fpg:(g + 1) * fpg].reshape(-1, fpg)
    return y.reshape(n, *out_hw, f)


def _finish(y: np.ndarray, bias, activation: str) -> np.ndarray:
    if bias is not None:
        y += bias
    return apply_activation(y, activation, inplace=True)


def _geometry(x, kernel_size, strides, dilation_rate, padding):
    dims = [out_and_pad(n, k, s, d, padding)
            for n, k, s, d in zip(x.shape[1:3], kernel_size, strides, dilation_rate, strict=True)]
    return tuple(o for o, _ in dims), tuple(p for _, p in dims)


@kernel("Conv2D")
def conv2d(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias,
           kernel, bias=None):
    """activation(conv2d(x, kernel) + bias), NHWC, TF 'same' padding (extra at bottom/right)."""
    out_hw, pad = _geometry(x, kernel_size, strides, dilation_rate, padding)
    y = _conv2d(x, kernel, strides, dilation_rate, pad, out_hw, groups)
    return _finish(y, bias, activation)


@kernel("Conv1D")
def conv1d(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias,
           kernel, bias=None):
    """activation(conv1d(x, kernel) + bias) over (N, L, C); 'causal' pads on the left only."""
    out, pad = out_and_pad(x.shape[1], kernel_size[0], strides[0], dilation_rate[0], padding)
    y = _conv2d(x[:, None], kernel[None], (1, strides[0]), (1, dilation_rate[0]), (0, pad), (1, out), groups)
    return _finish(y[:, 0], bias, activation)


def _depthwise(x, w, strides, dilation, pad, out_hw):
    """Depthwise 2-D cross-correlation: w (kh, kw, C, mult) -> (N, Ho, Wo, C*mult), channel c*mult+m."""
    n, c = x.shape[0], x.shape[-1]
    kh, kw, _, mult = w.shape
    if mult == 1:
        w, acc_shape = w[..., 0], (n, *out_hw, c)
    else:
        x, acc_shape = x[..., None], (n, *out_hw, c, mult)
    acc = np.zeros(acc_shape, _F32)
    tmp = np.empty(acc_shape, _F32)
    for i, j, rows, cols, r_in, c_in in taps(x.shape[1:3], out_hw, (kh, kw), strides, dilation, pad):
        dst = acc[:, rows[0]:rows[1], cols[0]:cols[1]]
        t = tmp[:, :rows[1] - rows[0], :cols[1] - cols[0]]
        np.multiply(x[:, r_in, c_in], w[i, j], out=t)
        dst += t
    return acc.reshape(n, *out_hw, c * mult)


@kernel("DepthwiseConv2D")
def depthwise_conv2d(x, *, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                     depth_multiplier, kernel, bias=None):
    """activation(depthwise_conv2d(x, kernel) + bias); output channel c*depth_multiplier + m."""
    out_hw, pad = _geometry(x, kernel_size, strides, dilation_rate, padding)
    return _finish(_depthwise(x, kernel, strides, dilation_rate, pad, out_hw), bias, activation)


@kernel("SeparableConv2D")
def separable_conv2d(x, *, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                     depth_multiplier, filters, depthwise_kernel, pointwise_kernel, bias=None):
    """activation(pointwise 1x1 conv of depthwise_conv2d(x) + bias)."""
    out_hw, pad = _geometry(x, kernel_size, strides, dilation_rate, padding)
    d = _depthwise(x, depthwise_kernel, strides, dilation_rate, pad, out_hw)
    y = _conv2d(d, pointwise_kernel, (1, 1), (1, 1), (0, 0), out_hw)
    return _finish(y, bias, activation)


def _transpose_geometry(n, k, s, d, padding, out_pad):
    """Output length and the crop before it of a transposed convolution (Keras/TF rule)."""
    span = (k - 1) * d + 1
    if padding == "valid":
        out = (n - 1) * s + span + (max(span, s) - span if out_pad is None else out_pad)
        return out, 0
    out = n * s if out_pad is None else (n - 1) * s + span % 2 + out_pad
    # The forward 'same' conv out -> n pads (n-1)*s + span - out, the smaller half first.
    return out, max((n - 1) * s + span - out, 0) // 2


@kernel("Conv2DTranspose")
def conv2d_transpose(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation,
                     use_bias, output_padding, kernel, bias=None):
    """activation(conv2d_transpose(x, kernel) + bias): the input-gradient of Conv2D; kernel (kh, kw, filters, cin)."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    pads = output_padding or (None, None)
    ho, crop_h = _transpose_geometry(h, kh, strides[0], dilation_rate[0], padding, pads[0])
    wo, crop_w = _transpose_geometry(w, kw, strides[1], dilation_rate[1], padding, pads[1])
    # Every input pixel times every tap, then scattered (col2im) to the full output.
    cols = (x.reshape(-1, c) @ kernel.transpose(3, 0, 1, 2).reshape(c, -1)).reshape(n, h, w, kh, kw, f)
    full_h = max((h - 1) * strides[0] + (kh - 1) * dilation_rate[0] + 1, crop_h + ho)
    full_w = max((w - 1) * strides[1] + (kw - 1) * dilation_rate[1] + 1, crop_w + wo)
    full = np.zeros((n, full_h, full_w, f), _F32)
    for i in range(kh):
        r = slice(i * dilation_rate[0], i * dilation_rate[0] + (h - 1) * strides[0] + 1, strides[0])
        for j in range(kw):
            q = slice(j * dilation_rate[1], j * dilation_rate[1] + (w - 1) * strides[1] + 1, strides[1])
            full[:, r, q] += cols[:, :, :, i, j]
    y = np.ascontiguousarray(full[:, crop_h:crop_h + ho, crop_w:crop_w + wo])
    return _finish(y, bias, activation)
