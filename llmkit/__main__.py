"""`python -m llmkit` (and `accelerate launch -m llmkit`) runs the same CLI as `llmkit`."""

from llmkit.cli import main

main()
