"""graphc.codegen: LLVM IR emission with llvmlite, math library, JIT, object cache."""
