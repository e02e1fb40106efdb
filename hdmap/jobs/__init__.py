"""What one command does apart from its console: fit-eval, evaluate a checkpoint, write run files."""
