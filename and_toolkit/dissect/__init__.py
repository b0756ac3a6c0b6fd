"""Dissection transforms: captions, summaries, Module A (closed concepts), B and C."""
