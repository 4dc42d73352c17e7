"""Optimizers and learning-rate schedules as graph ops, compiled with the forward and backward pass.

    opt = gc.optim.Adam(lr=gc.optim.Warmup(gc.optim.CosineDecay(1e-3, 1000), 100))
    updates = opt.updates(loss, params)          # calls gc.grad; (parameter, new value) pairs
    step = gc.compile([x, y], [loss], updates=updates)
    step(xb, yb)                                 # forward + backward + update: one native call

Optimizer state lives in parameters ("buffers") that the compiled step
updates in place: a step counter ``t`` (int64, the number of updates done
so far, named ``{opt.name}/step``) and per-parameter slots named
``{opt.name}/{param.name}/{slot}``. ``opt.state`` maps those names to their
tensors (for checkpoints).

Notation: ``g`` is the gradient of the loss with respect to ``p`` (plus
``λ p`` where a coupled weight decay ``λ`` is given), ``η_t`` the
learning rate of the schedule at the counter value ``t`` before the update,
and every update rule below computes all its new values from the old ones.

Schedules are objects with ``schedule(t_tensor) -> scalar Tensor`` (float64
graph ops on the counter) and ``schedule.value(t) -> float`` (the same
formula in Python, for references, printing and plots).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .autodiff import grad as _grad
from .dtypes import float64
from .errors import GraphError
from .ops.elementwise import cast, cos, floor, less, maximum, minimum, power, sqrt, where
from .tensor import Tensor, as_tensor, constant, parameter

__all__ = [
    "Schedule", "Constant", "StepDecay", "ExponentialDecay", "CosineDecay", "Warmup", "as_schedule",
    "Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW",
]


# ================================================================ schedules

class Schedule:
    """A learning rate as a function of the update counter ``t`` (0 for the first update)."""

    def __call__(self, t: Tensor) -> Tensor:
        """The rate as a float64 scalar graph op of the int counter tensor ``t``."""
        raise NotImplementedError

    def value(self, t: int) -> float:
        """The same rate computed in Python."""
        raise NotImplementedError

    def values(self, n: int) -> np.ndarray:
        """The rates of the first ``n`` updates."""
        return np.array([self.value(t) for t in range(n)])


def _f64(t: Tensor) -> Tensor:
    return cast(t, float64) if t.dtype != float64 else t


def _c(x: float) -> Tensor:
    return constant(float(x), dtype=float64)


class Constant(Schedule):
    """``η_t = lr``."""

    def __init__(self, lr: float):
        self.lr = float(lr)

    def __call__(self, t):
        return _c(self.lr)

    def value(self, t):
        return self.lr

    def __repr__(self):
        return f"Constant({self.lr:g})"


class StepDecay(Schedule):
    """``η_t = lr · γ^⌊t / step_size⌋`` (multiply by ``gamma`` every ``step_size`` updates)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        if step_size <= 0:
            raise ValueError("step_size must be positive")
        self.lr, self.step_size, self.gamma = float(lr), int(step_size), float(gamma)

    def __call__(self, t):
        return _c(self.lr) * power(_c(self.gamma), floor(_f64(t) / _c(self.step_size)))

    def value(self, t):
        return self.lr * self.gamma ** (t // self.step_size)

    def __repr__(self):
        return f"StepDecay({self.lr:g}, step_size={self.step_size}, gamma={self.gamma:g})"


class ExponentialDecay(Schedule):
    """``η_t = lr · rate^(t / decay_steps)`` (smooth; ``staircase=True`` uses ``⌊t / decay_steps⌋``)."""

    def __init__(self, lr: float, rate: float, decay_steps: int = 1, staircase: bool = False):
        if decay_steps <= 0:
            raise ValueError("decay_steps must be positive")
        self.lr, self.rate, self.decay_steps, self.staircase = float(lr), float(rate), int(decay_steps), staircase

    def __call__(self, t):
        e = _f64(t) / _c(self.decay_steps)
        return _c(self.lr) * power(_c(self.rate), floor(e) if self.staircase else e)

    def value(self, t):
        e = t / self.decay_steps
        return self.lr * self.rate ** (math.floor(e) if self.staircase else e)

    def __repr__(self):
        return f"ExponentialDecay({self.lr:g}, rate={self.rate:g}, decay_steps={self.decay_steps})"


class CosineDecay(Schedule):
    """``η_t = min_lr + (lr - min_lr) · (1 + cos(π · min(t, T) / T)) / 2`` over ``T = total_steps``,
    then ``min_lr``."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0):
        if total_steps <= 0:
            raise ValueError("total_steps must be positive")
        self.lr, self.total_steps, self.min_lr = float(lr), int(total_steps), float(min_lr)

    def __call__(self, t):
        frac = minimum(_f64(t), _c(self.total_steps)) / _c(self.total_steps)
        return _c(self.min_lr) + _c(0.5 * (self.lr - self.min_lr)) * (1.0 + cos(_c(math.pi) * frac))

    def value(self, t):
        frac = min(t, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * frac))

    def __repr__(self):
        return f"CosineDecay({self.lr:g}, total_steps={self.total_steps}, min_lr={self.min_lr:g})"


class Warmup(Schedule):
    """Linear warmup over ``W = warmup_steps`` updates, then ``after`` (a schedule or a float)
    started afresh: ``η_t = after(0) · (t + 1) / W`` for ``t < W``, ``after(t - W)`` from then on."""

    def __init__(self, after, warmup_steps: int):
        if warmup_steps <= 0:
            raise ValueError("warmup_steps must be positive")
        self.after, self.warmup_steps = as_schedule(after), int(warmup_steps)

    def __call__(self, t):
        t = as_tensor(t)
        w = self.warmup_steps
        tf = _f64(t)
        ramp = self.after(constant(0, dtype=t.dtype)) * ((tf + 1.0) / _c(w))
        later = self.after(maximum(t - w, 0))
        return where(less(t, w), ramp, later)

    def value(self, t):
        w = self.warmup_steps
        return self.after.value(0) * (t + 1) / w if t < w else self.after.value(t - w)

    def __repr__(self):
        return f"Warmup({self.after!r}, warmup_steps={self.warmup_steps})"


def as_schedule(lr) -> Schedule:
    """A Schedule as it is, a number as ``Constant(lr)``."""
    if isinstance(lr, Schedule):
        return lr
    if isinstance(lr, (int, float, np.floating, np.integer)) and not isinstance(lr, bool):
        return Constant(float(lr))
    raise TypeError(f"a learning rate must be a number or a gc.optim schedule, got {type(lr).__name__}")


# ================================================================ optimizers

class Optimizer:
    """Base class: turns gradients into ``(parameter, new value)`` update pairs for ``gc.compile``.

    Subclasses implement ``_rule(p, g, lr, t1)`` returning the new parameter
    value, reading and writing slots through ``self._slot`` / ``self._set``;
    ``lr`` is ``η_t`` (a scalar of p's dtype) and ``t1 = t + 1`` (float64
    scalar, the number of updates including this one).
    """

    def __init__(self, lr=0.01, weight_decay: float = 0.0, name: str | None = None):
        self.lr = as_schedule(lr)
        self.weight_decay = float(weight_decay)
        self.name = name if name is not None else type(self).__name__.lower()
        self.step: Tensor | None = None  # the counter parameter, created by the first updates()
        self._slots: dict[int, dict[str, Tensor]] = {}
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._param_names: dict[str, int] = {}

    # ----- public API
    def updates(self, loss: Tensor, params: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """``gc.grad(loss, params)``, then ``apply_gradients``."""
        params = list(params)
        return self.apply_gradients(params, _grad(loss, params))

    def apply_gradients(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """The update pairs for ``params`` given their gradients (e.g. after clipping), plus the counter's
        ``t ← t + 1``. Calling it again (another graph) reuses the same state buffers."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise GraphError(f"optimizer {self.name}", f"{len(params)} parameters but {len(grads)} gradients")
        t = self._counter()
        lr64 = self.lr(t)
        t1 = cast(t, float64) + 1.0
        lr_by_dtype: dict = {}
        out: list[tuple[Tensor, Tensor]] = []
        seen: set[int] = set()
        for p, g in zip(params, grads):
            self._check_param(p, g)
            if id(p.node) in seen:
                raise GraphError(f"optimizer {self.name}", f"parameter {p.name!r} is listed twice")
            seen.add(id(p.node))
            if p.dtype not in lr_by_dtype:
                lr_by_dtype[p.dtype] = cast(lr64, p.dtype)
            self._pending = []
            new_p = self._rule(p, g, lr_by_dtype[p.dtype], t1)
            out.append((p, new_p))
            out.extend(self._pending)
        self._pending = []
        out.append((t, t + 1))
        return out

    @property
    def state(self) -> dict[str, Tensor]:
        """Every buffer of the optimizer by name: the step counter and each parameter's slots."""
        st: dict[str, Tensor] = {}
        if self.step is not None:
            st[self.step.name] = self.step
        for slots in self._slots.values():
            for s in slots.values():
                st[s.name] = s
        return st

    @property
    def t(self) -> int:
        """The number of updates applied so far."""
        return 0 if self.step is None else int(self.step.value)

    def current_lr(self) -> float:
        """The learning rate of the next update."""
        return self.lr.value(self.t)

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr!r}, name={self.name!r})"

    # ----- for subclasses
    def _rule(self, p: Tensor, g: Tensor, lr: Tensor, t1: Tensor) -> Tensor:
        raise NotImplementedError

    def _slot(self, p: Tensor, name: str, init: float = 0.0) -> Tensor:
        """The buffer ``name`` of parameter ``p`` (created filled with ``init`` on first use)."""
        slots = self._slots.setdefault(id(p.node), {})
        if name not in slots:
            slots[name] = parameter(np.full(p.shape, init, p.dtype.np_dtype), name=f"{self.name}/{p.name}/{name}")
        return slots[name]

    def _set(self, slot: Tensor, value: Tensor) -> Tensor:
        """Schedule ``slot ← value``; returns ``value`` (the new slot value, used by the rule)."""
        self._pending.append((slot, value))
        return value

    def _decayed(self, p: Tensor, g: Tensor) -> Tensor:
        """``g + λ p`` (coupled L2 weight decay) when ``weight_decay`` is set."""
        return g + self.weight_decay * p if self.weight_decay else g

    # ----- internals
    def _counter(self) -> Tensor:
        if self.step is None:
            self.step = parameter(np.array(0, np.int64), name=f"{self.name}/step")
        return self.step

    def _check_param(self, p: Tensor, g: Tensor) -> None:
        if not isinstance(p, Tensor) or p.op != "parameter":
            raise GraphError(f"optimizer {self.name}", f"can only update parameters, got {p!r}")
        if not p.dtype.is_float:
            raise GraphError(f"optimizer {self.name}", f"parameter {p.name!r} is {p.type}, not float",
                             operands=[p.type])
        if g.shape != p.shape or g.dtype != p.dtype:
            raise GraphError(f"optimizer {self.name}", f"gradient {g.type} does not match parameter {p.name!r} "
                                                       f"{p.type}", operands=[p.type, g.type])
        other = self._param_names.setdefault(p.name, id(p.node))
        if other != id(p.node):
            raise GraphError(f"optimizer {self.name}", f"two different parameters are named {p.name!r}; "
                                                       "their optimizer slots would clash (name them apart)")


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum μ.

    * plain (μ = 0): ``p ← p - η_t g``;
    * momentum: ``v ← μ v + g``, ``p ← p - η_t v``;
    * Nesterov: ``v ← μ v + g``, ``p ← p - η_t (g + μ v)`` (the look-ahead gradient form).

    ``weight_decay`` λ adds ``λ p`` to ``g`` (L2 regularization).
    """

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 name: str | None = None):
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        super().__init__(lr, weight_decay, name)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _rule(self, p, g, lr, t1):
        g = self._decayed(p, g)
        if not self.momentum:
            return p - lr * g
        v = self._set(self._slot(p, "velocity"), self.momentum * self._slot(p, "velocity") + g)
        return p - lr * (g + self.momentum * v) if self.nesterov else p - lr * v


class Momentum(SGD):
    """SGD with heavy-ball momentum: ``v ← μ v + g``, ``p ← p - η_t v`` (μ = 0.9 by default)."""

    def __init__(self, lr=0.01, momentum: float = 0.9, weight_decay: float = 0.0, name: str | None = None):
        super().__init__(lr, momentum=momentum, nesterov=False, weight_decay=weight_decay, name=name)


class Nesterov(SGD):
    """SGD with Nesterov momentum: ``v ← μ v + g``, ``p ← p - η_t (g + μ v)``."""

    def __init__(self, lr=0.01, momentum: float = 0.9, weight_decay: float = 0.0, name: str | None = None):
        super().__init__(lr, momentum=momentum, nesterov=True, weight_decay=weight_decay, name=name)


class AdaGrad(Optimizer):
    """AdaGrad: ``s ← s + g²``, ``p ← p - η_t g / (√s + ε)`` (per-coordinate rates shrink with the
    accumulated squared gradients; ``s`` starts at ``initial_accumulator``)."""

    def __init__(self, lr=0.01, eps: float = 1e-10, initial_accumulator: float = 0.0, weight_decay: float = 0.0,
                 name: str | None = None):
        super().__init__(lr, weight_decay, name)
        self.eps, self.initial_accumulator = float(eps), float(initial_accumulator)

    def _rule(self, p, g, lr, t1):
        g = self._decayed(p, g)
        s_old = self._slot(p, "sum_sq", self.initial_accumulator)
        s = self._set(s_old, s_old + g * g)
        return p - lr * g / (sqrt(s) + self.eps)


class RMSProp(Optimizer):
    """RMSProp: ``s ← ρ s + (1-ρ) g²``, ``p ← p - η_t g / (√s + ε)`` (ρ = 0.9: a moving average of
    squared gradients instead of AdaGrad's growing sum)."""

    def __init__(self, lr=0.001, rho: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0,
                 name: str | None = None):
        super().__init__(lr, weight_decay, name)
        self.rho, self.eps = float(rho), float(eps)

    def _rule(self, p, g, lr, t1):
        g = self._decayed(p, g)
        s_old = self._slot(p, "mean_sq")
        s = self._set(s_old, self.rho * s_old + (1 - self.rho) * (g * g))
        return p - lr * g / (sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba): with ``k = t + 1`` updates so far,

    ``m ← β₁ m + (1-β₁) g``, ``v ← β₂ v + (1-β₂) g²``,
    ``m̂ = m / (1 - β₁^k)``, ``v̂ = v / (1 - β₂^k)``,
    ``p ← p - η_t m̂ / (√v̂ + ε)``.

    ``weight_decay`` λ here is coupled (``g + λ p``, as L2); see ``AdamW``.
    """

    decoupled = False

    def __init__(self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, name: str | None = None):
        super().__init__(lr, weight_decay, name)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _rule(self, p, g, lr, t1):
        if not self.decoupled:
            g = self._decayed(p, g)
        m_old, v_old = self._slot(p, "m"), self._slot(p, "v")
        m = self._set(m_old, self.beta1 * m_old + (1 - self.beta1) * g)
        v = self._set(v_old, self.beta2 * v_old + (1 - self.beta2) * (g * g))
        # bias corrections 1/(1 - β^k): scalars computed in float64, then cast to p's dtype
        c1 = cast(1.0 / (1.0 - power(_c(self.beta1), t1)), p.dtype)
        c2 = cast(1.0 / (1.0 - power(_c(self.beta2), t1)), p.dtype)
        step = (m * c1) / (sqrt(v * c2) + self.eps)
        if self.decoupled and self.weight_decay:
            step = step + self.weight_decay * p
        return p - lr * step


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay λ (default 0.01),
    ``p ← p - η_t (m̂ / (√v̂ + ε) + λ p)``; the decay does not pass through m and v."""

    decoupled = True

    def __init__(self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.01, name: str | None = None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, name)

