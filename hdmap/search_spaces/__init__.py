"""Search spaces as data (YAML), shipped inside the package as `hdmap.search_spaces`; see hdmap/tune/spaces.py."""
