"""Loop helpers that make IR loops read like Python (in the spirit of numba's cgutils).

    with for_range(b, start, stop) as i:
        ...   # body at index i (an i64 value)
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from llvmlite import ir

I64 = ir.IntType(64)


def const64(v: int) -> ir.Constant:
    return ir.Constant(I64, int(v))


@contextmanager
def for_range(b: ir.IRBuilder, start, stop, name: str = "i", hints: dict | None = None):
    """``for i in range(start, stop)`` with i64 bounds (Python ints or values).

    ``hints``: ``llvm.loop`` metadata for the loop, e.g. ``{"llvm.loop.interleave.count": 1,
    "llvm.loop.unroll.disable": None}`` (see ``loop_hints``)."""
    start = const64(start) if isinstance(start, int) else start
    stop = const64(stop) if isinstance(stop, int) else stop
    pre = b.block
    fn = pre.function
    head = fn.append_basic_block(f"{name}.head")
    body = fn.append_basic_block(f"{name}.body")
    end = fn.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, const64(1), name=f"{name}.next")
    nxt.flags.append("nsw")
    i.add_incoming(nxt, b.block)
    latch = b.branch(head)
    if hints:
        latch.set_metadata("llvm.loop", loop_hints(b.module, hints))
    b.position_at_end(end)


def loop_hints(module: ir.Module, hints: dict):
    """A distinct ``llvm.loop`` node (its first operand is itself) holding ``hints``: name ->
    i32 value, or None for a hint without one (``llvm.loop.unroll.disable``)."""
    ops = []
    for key, value in hints.items():
        parts = [ir.MetaDataString(module, key)]
        if value is not None:
            parts.append(ir.Constant(ir.IntType(32), int(value)))
        ops.append(module.add_metadata(parts))
    # llvmlite returns an existing node for equal operands: a name of its own keeps this one
    # distinct, then the name is replaced by the self-reference
    count = getattr(module, "_graphc_loops", 0) + 1
    module._graphc_loops = count
    node = module.add_metadata([ir.MetaDataString(module, f"graphc.loop.{count}")] + ops)
    node.operands = (node,) + tuple(ops)
    return node


@contextmanager
def loop_nest(b: ir.IRBuilder, bounds, name: str = "d", inner_hints: dict | None = None):
    """Nested loops over ``bounds`` = [(start, stop), ...], outermost first; yields the index list.
    ``inner_hints``: ``llvm.loop`` hints of the innermost loop (see ``for_range``)."""
    with ExitStack() as stack:
        last = len(bounds) - 1
        yield [stack.enter_context(for_range(b, lo, hi, name=f"{name}{k}", hints=inner_hints if k == last else None))
               for k, (lo, hi) in enumerate(bounds)]


def accumulate_var(b: ir.IRBuilder, ty, init, name="acc", init_in_entry: bool = False):
    """A stack slot allocated in the entry block (promoted to a register by LLVM's mem2reg),
    set to ``init`` here (or once, in the entry block, with ``init_in_entry``)."""
    fn = b.block.function
    entry = fn.entry_basic_block
    with b.goto_block(entry):
        if entry.instructions:
            b.position_before(entry.instructions[0])
        slot = b.alloca(ty, name=name)
        if init_in_entry:
            b.store(init, slot)
    if not init_in_entry:
        b.store(init, slot)
    return slot
