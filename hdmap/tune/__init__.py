"""Ray Tune search: YAML search spaces, trainables, the runner, checkpoints."""
