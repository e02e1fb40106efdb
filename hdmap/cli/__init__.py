"""The console commands of `hdmap` (entry point: hdmap.cli.main:main)."""
