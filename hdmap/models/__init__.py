"""What the model kinds share: memory bank, coreset and its store, kNN choice, patch embeddings, the band detector (its own kind and PatchCore's fusion) and checkpoint files."""
