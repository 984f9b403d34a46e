"""Fast backends. Only this subpackage imports Numba; the reference modules never do."""
