"""graphc: a static-graph compiler for deep learning."""
