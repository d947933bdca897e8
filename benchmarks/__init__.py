"""Performance and retrieval-quality benchmarks (run by hand; they print figures)."""
