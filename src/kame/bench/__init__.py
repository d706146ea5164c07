"""kame's benchmarks: one module per `kame bench NAME` (bench/*.py scripts call kame.cli)."""
