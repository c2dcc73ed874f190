"""Batch normalization's backward pass as an implementer writes it, in NumPy.

The report prints this function's source as it stands here, so what a reader copies is what
``frameworks.kernel.implementation_check`` runs, in float32 and float64, against PyTorch's own
batch-norm backward.  Each line is a proved claim: ``bn.backward.dl-dbeta``,
``bn.backward.dl-dgamma`` and ``bn.backward.compact``.
"""

import numpy as np


def bn_backward(dy, xhat, r, gamma, axes=(0,)):
    """dx, dgamma, dbeta from dy, the cached xhat and r = 1/sqrt(var+eps)."""
    # axes (0,) for (N, C), (0, 2, 3) for (N, C, H, W); gamma, r broadcast
    m = np.prod([dy.shape[a] for a in axes])    # N, or N*H*W
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * xhat).sum(axis=axes, keepdims=True)
    dx = (gamma * r / m) * (m * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
