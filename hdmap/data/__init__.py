"""HDMAP data: reading, layout, transforms, splits, synthetic generator, datamodule."""
