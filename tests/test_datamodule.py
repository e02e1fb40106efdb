from hdmap.data.datamodule import HDMAPDataModule
from hdmap.data.splits import TestSplit
from hdmap.data.transforms import MapTransform


def test_datamodule_serves_references_tune_holdout_and_saves_split(synth_root, tmp_path):
    split_path = tmp_path / "split.json"
    dm = HDMAPDataModule(str(synth_root), "C", MapTransform(56, "aspect", "imagenet", 14), shots=4,
                         split_path=str(split_path), batch_size=8)
    dm.setup()
    assert len(dm.reference_items) == 8 and all(i.subset == "train/good" for i in dm.reference_items)
    assert len(dm.tune_items) == 24 and len(dm.holdout_items) == 56
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (8, 3, 14, 56)
    assert split_path.exists() and TestSplit.load(split_path).tune == dm.split.tune
    again = HDMAPDataModule(str(synth_root), "C", shots=4, split_path=str(split_path), split_seed=99)
    again.setup()
    assert again.split.tune == dm.split.tune  # the saved split wins over a new seed


def test_references_per_condition_assignment(synth_root):
    dm = HDMAPDataModule(str(synth_root), "C", shots=3, reference_assignment=["cold", "warm"] * 20)
    dm.setup()
    assert len(dm.reference_indices) == 6
    assert sorted(i % 2 for i in dm.reference_indices) == [0, 0, 0, 1, 1, 1]
