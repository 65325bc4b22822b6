"""The convergence engine: observe -> plan (pure) -> [stop for dry-run] -> apply -> verify."""
