import numpy as np
import pytest

from hdmap.data.conditions import half_split_conditions
from hdmap.data.errors import HDMAPFileError, HDMAPLayoutError
from hdmap.data.map_files import discover_domain, read_map


def test_reads_float32_without_clipping(write_tiff):
    array = np.linspace(0, 2.9, 31 * 95, dtype=np.float32).reshape(31, 95)
    out = read_map(write_tiff("000001.tiff", array))
    assert out.dtype == np.float32 and out.shape == (31, 95)
    assert out.max() == pytest.approx(2.9) and np.array_equal(out, array)


def test_reads_other_sizes_and_tif_suffix(write_tiff):
    assert read_map(write_tiff("x.tif", np.ones((10, 20), np.float64))).dtype == np.float32


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3, 4), np.float32), "2-D"),
    (np.zeros((0, 5), np.float32), "empty"),
    (np.array([[1.0, np.nan]], np.float32), "NaN/inf"),
    (np.array([[1.0, np.inf]], np.float32), "NaN/inf"),
])
def test_bad_maps_name_file_and_problem(write_tiff, array, message):
    path = write_tiff("bad.tiff", array)
    with pytest.raises(HDMAPFileError, match=message) as info:
        read_map(path)
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "000000.tiff"
    path.write_bytes(b"not a tiff")
    with pytest.raises(HDMAPFileError, match="cannot be read") as info:
        read_map(path)
    assert str(path) in str(info.value)


def test_missing_domain_and_empty_folder(tmp_path):
    with pytest.raises(HDMAPLayoutError, match="domain_C"):
        discover_domain(tmp_path, "C")
    (tmp_path / "domain_C" / "train" / "good").mkdir(parents=True)
    with pytest.raises(HDMAPLayoutError, match="no .tif/.tiff maps in .*train/good"):
        discover_domain(tmp_path, "C")


def test_condition_rule_first_half_cold():
    assert half_split_conditions([3, 0, 2, 1]) == ["warm", "cold", "warm", "cold"]


def test_discovery_labels_conditions(synth_root):
    items = discover_domain(synth_root, "C")
    assert len(items["train"]) == 40 and len(items["test"]) == 80
    assert {i.condition for i in items["train"]} == {"unknown"}
    good = [i for i in items["test"] if i.label == 0]
    assert [i.condition for i in good] == ["cold"] * 20 + ["warm"] * 20
    assert all(i.subset == "test/fault" for i in items["test"] if i.label == 1)


def test_csv_overrides_condition(synth_root):
    items = discover_domain(synth_root, "C", synth_root / "domain_C" / "train_conditions.csv",
                            condition_csv_partial=True)
    assert {i.condition for i in items["train"]} == {"cold", "warm"}


def test_bad_csv(tmp_path, synth_root):
    csv = tmp_path / "c.csv"
    csv.write_text("path,condition\nx.tiff,lukewarm\n")
    with pytest.raises(HDMAPFileError, match="c.csv:2"):
        discover_domain(synth_root, "C", csv, condition_csv_partial=True)
