"""Data: sources (local, hub, builtin), cleaning, and packing into cached blocks."""
