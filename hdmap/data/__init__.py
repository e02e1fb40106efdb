"""HDMAP data: map files, a domain with its split and conditions, transforms, condition statistics (the input
preparation), synthetic data."""
