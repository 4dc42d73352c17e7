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
def for_range(b: ir.IRBuilder, start, stop, name: str = "i"):
    """``for i in range(start, stop)`` with i64 bounds (Python ints or values)."""
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
    b.branch(head)
    b.position_at_end(end)


@contextmanager
def loop_nest(b: ir.IRBuilder, bounds, name: str = "d"):
    """Nested loops over ``bounds`` = [(start, stop), ...], outermost first; yields the index list."""
    with ExitStack() as stack:
        yield [stack.enter_context(for_range(b, lo, hi, name=f"{name}{k}")) for k, (lo, hi) in enumerate(bounds)]


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
