"""Ray Tune search: YAML search spaces, start points, the one trainable, the runner, the summary."""
