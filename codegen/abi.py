"""The calling convention between the runtime and compiled modules (constants only).

A compiled module exports ``void graphc_run(i8** bufs)``: ``bufs[0]`` points
at the runtime table below (addresses of this process's helpers, filled in by
``codegen.compiler.runtime_table``, so machine code holds no addresses and can
be cached on disk), ``bufs[1]`` at an i64 status word, ``bufs[slot]`` at each
buffer (see ``codegen.emit`` and ``codegen.plan``).

This module is separate so that loading cached code needs neither the code
generator nor llvmlite's IR layer.
"""

ENTRY_NAME = "graphc_run"

# runtime table entries
RT_PARALLEL_FOR = 0  # void parallel_for(void (*task)(i8*, i64), i8* ctx, i64 n_chunks)
RT_SGEMM = 1         # the BLAS sgemm
RT_DGEMM = 2         # the BLAS dgemm
RT_BLAS_SERIAL = 3   # void (): BLAS single-threaded while this call runs (codegen.dispatch)
RT_BLAS_RESTORE = 4  # void (): give BLAS its thread count back
RUNTIME_TABLE_SIZE = 5
