"""lm-evaluation-harness tasks shipped with llmkit: the harness's own task definitions,
reading local copies instead of the hub (`llmkit evaluate --local-dir DIR`, or
$LLMKIT_DATA_DIR). Each YAML names its loader in `local_copies.py`."""
