"""Cold/warm gates: oracle, intensity percentile, feature centroid, unsupervised discovery."""
