"""kame.eval tests."""
