"""One module per verb; each exposes one function that the CLI (or a test) calls."""
