"""graphc.passes: autodiff, simplification, CSE, folding, DCE, fusion, memory planning (Graph -> Graph)."""
