"""Streaming chat LLMs."""
