"""Neural-network building blocks: activations, losses, metrics, initializers, layers.

Everything here builds graph ops (so it compiles, differentiates and prints
like the rest of graphc), except the initializers, which return numpy arrays
to hand to ``gc.parameter``::

    import graphc as gc
    layer = gc.nn.Linear(784, 10, name="out", init="xavier", seed=0)
    logits = layer(x)                                  # x @ W + b
    loss = gc.nn.cross_entropy(logits, labels)         # mean over the batch
    err = gc.nn.zero_one_error(logits, labels)         # a metric, not differentiated

Losses are numerically stable by construction:

* cross-entropy from logits ``z`` and an integer label ``y``:
  ``ℓ = logsumexp(z) - z_y`` (never ``-log(softmax(z)_y)``, which overflows
  for large logits and gives ``log 0 = -inf`` for small probabilities);
* binary log-loss from a logit ``z`` and ``y ∈ {0, 1}``:
  ``ℓ = -y log σ(z) - (1-y) log(1-σ(z)) = softplus(z) - y z``, with
  ``softplus(z) = max(z, 0) + log1p(e^-|z|)`` evaluated without overflow.

Every loss takes ``reduction="mean" | "sum" | "none"``: ``"none"`` returns
the per-example losses (the training helper uses it to evaluate padded
batches exactly).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

from .dtypes import as_dtype, float32
from .errors import GraphError
from .ops.elementwise import abs as _abs
from .ops.elementwise import cast, gelu, greater, logical_not, not_equal, relu, sigmoid, softplus, tanh, where
from .ops.index import one_hot
from .ops.nn import log_softmax, softmax
from .ops.reduce import argmax
from .ops.reduce import mean as _mean
from .ops.reduce import sum as _sum
from .tensor import Tensor, as_tensor, parameter

__all__ = [
    # activations
    "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softmax", "log_softmax",
    # losses
    "mse", "mae", "cross_entropy", "binary_cross_entropy_with_logits", "log_loss", "hinge",
    "multiclass_hinge",
    # metrics
    "zero_one_error", "accuracy",
    # initializers
    "zeros", "normal", "xavier_uniform", "xavier_normal", "glorot_uniform", "glorot_normal",
    "he_normal", "he_uniform", "initialize",
    # layers
    "Linear", "MLP",
]


# ---------------------------------------------------------------- activations
# sigmoid σ(x) = 1/(1+e^-x), tanh, relu max(x,0), softplus log(1+e^x), gelu,
# softmax and log_softmax (along an axis) are graphc ops, re-exported above.

def leaky_relu(x, alpha: float = 0.01) -> Tensor:
    """``x`` for x > 0, ``alpha·x`` otherwise."""
    x = as_tensor(x)
    return where(x > 0, x, alpha * x)


def elu(x, alpha: float = 1.0) -> Tensor:
    """``x`` for x > 0, ``alpha·(e^x - 1)`` otherwise (the exponential is of min(x, 0): no overflow)."""
    from .ops.elementwise import expm1, minimum
    x = as_tensor(x)
    return where(x > 0, x, alpha * expm1(minimum(x, 0)))


def silu(x) -> Tensor:
    """``x·σ(x)`` (also called swish)."""
    x = as_tensor(x)
    return x * sigmoid(x)


# ---------------------------------------------------------------- reductions

def _reduce(per_example: Tensor, reduction: str, what: str) -> Tensor:
    if reduction == "mean":
        return _mean(per_example)
    if reduction == "sum":
        return _sum(per_example)
    if reduction == "none":
        return per_example
    raise GraphError(what, f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _float_pair(what: str, pred, target):
    pred, target = as_tensor(pred), as_tensor(target)
    if not pred.dtype.is_float:
        raise GraphError(what, f"predictions must be floats, got {pred.type}", operands=[pred.type])
    if target.dtype != pred.dtype:
        target = cast(target, pred.dtype)
    if target.shape != pred.shape:
        raise GraphError(what, f"predictions {pred.type} and targets {target.type} differ in shape "
                               "(reshape one of them: broadcasting here is almost always a bug)",
                         operands=[pred.type, target.type])
    return pred, target


def _elementwise_loss(x: Tensor, reduction: str, what: str) -> Tensor:
    """Reduce elementwise losses: ``"mean"``/``"sum"`` over every element, ``"none"`` per example
    (the mean over every axis but the first, so that the mean of ``"none"`` equals ``"mean"``)."""
    if reduction == "none" and x.ndim > 1:
        return _mean(x, axis=tuple(range(1, x.ndim)))
    return _reduce(x, reduction, what)


# ---------------------------------------------------------------- regression losses

def mse(pred, target, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(1/n) Σ_i (pred_i - target_i)²`` over all n elements (``"sum"``: the sum;
    ``"none"``: per example, averaged over the non-batch axes)."""
    pred, target = _float_pair("mse", pred, target)
    d = pred - target
    return _elementwise_loss(d * d, reduction, "mse")


def mae(pred, target, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``(1/n) Σ_i |pred_i - target_i|`` (reductions as in ``mse``)."""
    pred, target = _float_pair("mae", pred, target)
    return _elementwise_loss(_abs(pred - target), reduction, "mae")


# ---------------------------------------------------------------- classification losses

def cross_entropy(logits, labels, reduction: str = "mean", axis: int = -1) -> Tensor:
    """Softmax cross-entropy from logits.

    Integer ``labels`` (shape = logits' shape without the class axis):
    ``ℓ = logsumexp(z) - z_y = -log_softmax(z)_y``. Float ``labels`` of the
    logits' shape are class probabilities: ``ℓ = -Σ_k p_k log_softmax(z)_k``.
    Both are computed from ``log_softmax`` (max-shifted), never ``log(softmax)``.
    Labels outside ``[0, C)`` select nothing (their one-hot row is zero).
    """
    logits = as_tensor(logits)
    labels = as_tensor(labels)
    if not logits.dtype.is_float:
        raise GraphError("cross_entropy", f"logits must be floats, got {logits.type}", operands=[logits.type])
    if logits.ndim == 0:
        raise GraphError("cross_entropy", "logits need a class axis", operands=[logits.type])
    ax = axis % logits.ndim
    n_classes = logits.shape[ax]
    lsm = log_softmax(logits, axis=ax)
    if labels.dtype.is_float:
        if labels.shape != logits.shape:
            raise GraphError("cross_entropy", f"probability labels {labels.type} must have the logits' shape "
                                              f"{logits.type}", operands=[logits.type, labels.type])
        target = cast(labels, logits.dtype) if labels.dtype != logits.dtype else labels
    else:
        want = logits.shape[:ax] + logits.shape[ax + 1:]
        if labels.shape != want:
            raise GraphError("cross_entropy", f"integer labels {labels.type} must have shape {want} "
                                              f"(the logits' {logits.type} without the class axis)",
                             operands=[logits.type, labels.type])
        target = one_hot(labels, n_classes, logits.dtype)
        if ax != logits.ndim - 1:
            from .ops.linalg import transpose
            perm = list(range(ax)) + [logits.ndim - 1] + list(range(ax, logits.ndim - 1))
            target = transpose(target, perm)
    per = -_sum(target * lsm, axis=ax)
    return _reduce(per, reduction, "cross_entropy")


def binary_cross_entropy_with_logits(logits, labels, reduction: str = "mean") -> Tensor:
    """Binary log-loss from logits ``z`` and labels ``y ∈ {0, 1}`` (or probabilities in [0, 1]).

    ``ℓ = -y log σ(z) - (1-y) log(1 - σ(z)) = softplus(z) - y·z``, exact and
    stable for any z (softplus never overflows; no log of 0).
    """
    z, y = _float_pair("binary_cross_entropy_with_logits", logits, labels)
    return _elementwise_loss(softplus(z) - y * z, reduction, "binary_cross_entropy_with_logits")


log_loss = binary_cross_entropy_with_logits


def hinge(scores, labels, reduction: str = "mean", margin: float = 1.0) -> Tensor:
    """Binary hinge loss ``max(0, margin - y·s)`` for labels ``y ∈ {-1, +1}``."""
    s, y = _float_pair("hinge", scores, labels)
    return _elementwise_loss(relu(margin - y * s), reduction, "hinge")


def multiclass_hinge(scores, labels, reduction: str = "mean", margin: float = 1.0) -> Tensor:
    """Multi-class (Weston–Watkins) hinge: ``Σ_{k≠y} max(0, margin + s_k - s_y)`` for integer labels."""
    s = as_tensor(scores)
    labels = as_tensor(labels)
    if s.ndim != labels.ndim + 1 or s.shape[:-1] != labels.shape or labels.dtype.is_float:
        raise GraphError("multiclass_hinge", f"needs scores [..., C] and integer labels [...], got {s.type} "
                                             f"and {labels.type}", operands=[s.type, labels.type])
    oh = one_hot(labels, s.shape[-1], s.dtype)
    s_y = _sum(s * oh, axis=-1, keepdims=True)
    viol = relu(margin + s - s_y) * (1 - oh)
    return _reduce(_sum(viol, axis=-1), reduction, "multiclass_hinge")


# ---------------------------------------------------------------- metrics (not differentiable)

def _wrong(scores, labels) -> Tensor:
    s, y = as_tensor(scores), as_tensor(labels)
    if s.shape == y.shape:  # binary: a score > 0 predicts the positive class; y > 0 is positive
        return not_equal(greater(s, 0), greater(y, 0))
    if s.ndim == y.ndim + 1 and s.shape[:-1] == y.shape:
        pred = argmax(s, axis=-1)
        if y.dtype != pred.dtype:
            y = cast(y, pred.dtype)
        return not_equal(pred, y)
    raise GraphError("zero_one_error", f"needs scores [..., C] with labels [...] or scores and labels of one "
                                       f"shape, got {s.type} and {y.type}", operands=[s.type, y.type])


def zero_one_error(scores, labels, reduction: str = "mean", dtype=None) -> Tensor:
    """The 0-1 loss ``1[prediction ≠ label]`` (a metric: it has no useful gradient).

    Multi-class: prediction = ``argmax(scores, -1)`` against integer labels.
    Binary (scores and labels of one shape): prediction = ``scores > 0``
    against ``labels > 0`` (so labels may be {0, 1} or {-1, +1}).
    """
    s = as_tensor(scores)
    dtype = as_dtype(dtype) if dtype is not None else (s.dtype if s.dtype.is_float else float32)
    return _reduce(cast(_wrong(scores, labels), dtype), reduction, "zero_one_error")


def accuracy(scores, labels, reduction: str = "mean", dtype=None) -> Tensor:
    """``1 - zero_one_error``: the fraction of correct predictions."""
    s = as_tensor(scores)
    dtype = as_dtype(dtype) if dtype is not None else (s.dtype if s.dtype.is_float else float32)
    right = cast(logical_not(_wrong(scores, labels)), dtype)
    return _reduce(right, reduction, "accuracy")


# ---------------------------------------------------------------- initializers (numpy arrays)

def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape``: a matrix ``[in, out]`` (x @ W convention);
    leading axes of a higher-rank weight count as receptive field."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape, dtype=np.float32) -> np.ndarray:
    """All zeros (biases)."""
    return np.zeros(shape, dtype)


def normal(shape, std: float = 0.01, seed=None, mean: float = 0.0, dtype=np.float32) -> np.ndarray:
    """Independent ``N(mean, std²)`` entries."""
    return (mean + std * _rng(seed).standard_normal(shape)).astype(dtype)


def xavier_uniform(shape, seed=None, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Glorot/Xavier uniform: ``U(-a, a)`` with ``a = gain·√(6 / (fan_in + fan_out))``,
    so that Var = 2 / (fan_in + fan_out) (keeps activations and gradients at one scale)."""
    fi, fo = _fans(shape)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return _rng(seed).uniform(-a, a, size=shape).astype(dtype)


def xavier_normal(shape, seed=None, gain: float = 1.0, dtype=np.float32) -> np.ndarray:
    """Glorot/Xavier normal: ``N(0, σ²)`` with ``σ = gain·√(2 / (fan_in + fan_out))``."""
    fi, fo = _fans(shape)
    return normal(shape, gain * math.sqrt(2.0 / (fi + fo)), seed, dtype=dtype)


glorot_uniform = xavier_uniform
glorot_normal = xavier_normal


def he_normal(shape, seed=None, dtype=np.float32) -> np.ndarray:
    """He/Kaiming normal for ReLU layers: ``N(0, σ²)`` with ``σ = √(2 / fan_in)``."""
    fi, _ = _fans(shape)
    return normal(shape, math.sqrt(2.0 / fi), seed, dtype=dtype)


def he_uniform(shape, seed=None, dtype=np.float32) -> np.ndarray:
    """He/Kaiming uniform: ``U(-a, a)`` with ``a = √(6 / fan_in)`` (variance 2 / fan_in)."""
    fi, _ = _fans(shape)
    a = math.sqrt(6.0 / fi)
    return _rng(seed).uniform(-a, a, size=shape).astype(dtype)


_INITS: dict[str, Callable] = {
    "zeros": lambda shape, seed, dtype: zeros(shape, dtype),
    "normal": lambda shape, seed, dtype: normal(shape, 0.01, seed, dtype=dtype),
    "xavier": lambda shape, seed, dtype: xavier_uniform(shape, seed, dtype=dtype),
    "xavier_uniform": lambda shape, seed, dtype: xavier_uniform(shape, seed, dtype=dtype),
    "xavier_normal": lambda shape, seed, dtype: xavier_normal(shape, seed, dtype=dtype),
    "glorot": lambda shape, seed, dtype: xavier_uniform(shape, seed, dtype=dtype),
    "he": lambda shape, seed, dtype: he_normal(shape, seed, dtype=dtype),
    "he_normal": lambda shape, seed, dtype: he_normal(shape, seed, dtype=dtype),
    "he_uniform": lambda shape, seed, dtype: he_uniform(shape, seed, dtype=dtype),
}


def initialize(init, shape, seed=None, dtype=np.float32) -> np.ndarray:
    """An initial array from an initializer name (``zeros normal xavier xavier_normal he he_uniform``)
    or a function ``f(shape, seed) -> array``."""
    if callable(init):
        return np.asarray(init(tuple(shape), seed), dtype=dtype)
    try:
        return _INITS[init](tuple(shape), seed, dtype)
    except KeyError:
        raise ValueError(f"unknown initializer {init!r}; choose one of {sorted(_INITS)} or pass a function") \
            from None


# ---------------------------------------------------------------- layers

_layer_ids = itertools.count()


class Linear:
    """An affine layer ``y = x @ W + b`` with named parameters ``{name}.weight`` [in, out] and
    ``{name}.bias`` [out].

    ``init`` names the weight initializer (``"he"`` for ReLU networks,
    ``"xavier"`` for sigmoid/tanh/linear outputs, ``"zeros"``...); the bias
    starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, name: str | None = None, bias: bool = True,
                 init="xavier", seed=None, dtype=np.float32):
        self.name = name if name is not None else f"linear{next(_layer_ids)}"
        self.in_features, self.out_features = int(in_features), int(out_features)
        dtype = as_dtype(dtype).np_dtype
        self.weight = parameter(initialize(init, (self.in_features, self.out_features), seed, dtype),
                                name=f"{self.name}.weight")
        self.bias = parameter(np.zeros(self.out_features, dtype), name=f"{self.name}.bias") if bias else None

    @property
    def params(self) -> list[Tensor]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def __call__(self, x) -> Tensor:
        x = as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise GraphError(f"Linear {self.name!r}", f"expects inputs [..., {self.in_features}], got {x.type}",
                             operands=[x.type])
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, name={self.name!r})"


class MLP:
    """Linear layers with an activation between them (none after the last): ``sizes = [784, 256, 10]``
    gives ``relu(x @ W0 + b0) @ W1 + b1``. Parameters are named ``{name}.{k}.weight`` / ``.bias``."""

    def __init__(self, sizes: Sequence[int], activation: Callable = relu, name: str = "mlp", init=None,
                 seed=None, dtype=np.float32):
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least [in, out] sizes")
        rng = _rng(seed)
        init = init if init is not None else ("he" if activation is relu else "xavier")
        self.activation = activation
        self.layers = [Linear(a, b, name=f"{name}.{k}", init=init if k < len(sizes) - 2 else "xavier",
                              seed=rng, dtype=dtype)
                       for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]

    @property
    def params(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.params]

    def __call__(self, x) -> Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = self.activation(x)
        return x
