"""float32 matmuls and convolutions in full precision, or in TensorFloat-32 where the spec asks (train.tf32).

TF32 keeps float32's range and a 10-bit mantissa (float16's): an A100 or H100 multiplies float32 matrices on its
tensor cores at ~8x the full-precision rate, with products rounded to ~3 decimal digits. It is a CUDA setting (a
CPU ignores it) and torch's is process-wide, so a stack sets it for as long as it trains and puts back what was
there. Off (train.tf32: false, the default) is full float32 for matmuls and convolutions both (torch's own default
lets convolutions use TF32).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def float32_precision(tf32: bool) -> Iterator[None]:
    """Matmuls and convolutions in TF32 (tf32) or full float32 while the block runs; the settings before it after.

    >>> with float32_precision(True):
    ...     torch.backends.cuda.matmul.fp32_precision
    'tf32'
    >>> torch.backends.cuda.matmul.fp32_precision != "tf32"
    True
    """
    matmul = torch.backends.cuda.matmul
    conv = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # (set up at import; torch's stubs lack it)
    before = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32" if tf32 else "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = before
