"""Sessions, the frame clock, the batched stepping worker, metrics and file mode."""
