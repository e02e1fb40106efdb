import numpy as np
import pytest
import yaml
from PIL import Image

from hdmap.data.industrial import DatasetLayoutError, IndustrialDataset, read_mvtec, read_visa
from hdmap.evaluation.pro import aupro
from hdmap.kinds.feclip.model import TINY_CLIP

TINY_MODEL = TINY_CLIP


def _png(path, value, size=(20, 20), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((*size, 3) if mode == "RGB" else size, value, np.uint8)
    Image.fromarray(array, mode).save(path)


def _defect(path, mask_path):
    _png(path, 40)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:9, 5:15] = 255
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask, "L").save(mask_path)
    image = np.full((20, 20, 3), 40, np.uint8)
    image[5:9, 5:15] = 220
    Image.fromarray(image, "RGB").save(path)


@pytest.fixture
def mvtec(tmp_path):
    root = tmp_path / "mvtec"
    for category in ("bottle", "screw"):
        for i in range(3):
            _png(root / category / "train" / "good" / f"{i:03d}.png", 40)
            _png(root / category / "test" / "good" / f"{i:03d}.png", 40)
            _defect(root / category / "test" / "crack" / f"{i:03d}.png",
                    root / category / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    return root


@pytest.fixture
def visa(tmp_path):
    root = tmp_path / "visa"
    rows = ["object,split,label,image,mask"]
    for i in range(3):
        _png(root / "candle" / "Data" / "Images" / "Normal" / f"{i}.JPG", 40)
        rows.append(f"candle,test,normal,candle/Data/Images/Normal/{i}.JPG,")
        _defect(root / "candle" / "Data" / "Images" / "Anomaly" / f"{i}.JPG",
                root / "candle" / "Data" / "Masks" / "Anomaly" / f"{i}.png")
        rows.append(f"candle,test,anomaly,candle/Data/Images/Anomaly/{i}.JPG,candle/Data/Masks/Anomaly/{i}.png")
    rows.append("candle,train,normal,candle/Data/Images/Normal/0.JPG,")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return root


def test_mvtec_reader(mvtec):
    samples = read_mvtec(mvtec)
    assert len(samples) == 12 and {s.category for s in samples} == {"bottle", "screw"}
    assert all((s.mask is None) == (s.label == 0) for s in samples)
    assert len(read_mvtec(mvtec, split="train")) == 6


def test_mvtec_missing_mask_and_root(mvtec, tmp_path):
    (mvtec / "screw" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DatasetLayoutError, match="001_mask.png"):
        read_mvtec(mvtec)
    with pytest.raises(DatasetLayoutError, match="not found"):
        read_mvtec(tmp_path / "nowhere")


def test_visa_reader_and_errors(visa):
    samples = read_visa(visa)
    assert len(samples) == 6 and sum(s.label for s in samples) == 3
    item = IndustrialDataset(samples, 32)[3]
    assert item["image"].shape == (3, 32, 32) and item["mask"].sum() > 0
    (visa / "split_csv" / "1cls.csv").write_text("object,split,image\n")
    with pytest.raises(DatasetLayoutError, match="needs columns"):
        read_visa(visa)


def test_aupro_hand_cases():
    masks = np.zeros((2, 10, 10))
    masks[0, 2:4, 2:8] = 1
    perfect = masks * 0.9 + 0.05
    assert aupro(perfect, masks) == pytest.approx(1.0, abs=0.02)
    inverted = 1 - perfect
    assert aupro(inverted, masks) < 0.05


def test_benchmark_script_on_tiny_trees(mvtec, visa, tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import feclip_benchmark

    model_yaml = tmp_path / "tiny.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MODEL))
    out = tmp_path / "bench.md"
    assert feclip_benchmark.main(["--train-on", "visa", "--eval-on", "mvtec", "--visa-root", str(visa),
                                  "--mvtec-root", str(mvtec), "--model-yaml", str(model_yaml), "--image-size", "32",
                                  "--epochs", "1", "--batch-size", "4", "--out", str(out),
                                  "--save-checkpoint", str(tmp_path / "fe.ckpt")]) == 0
    assert (tmp_path / "fe.ckpt").exists()
    text = out.read_text()
    assert "| category | image AUROC | image AP | pixel AUROC | AUPRO |" in text
    assert "| bottle |" in text and "| screw |" in text and "paper (FE-CLIP, ICCV 2025) | 91.9" in text


def test_benchmark_refuses_training_on_the_evaluation_set(mvtec, tmp_path, capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import feclip_benchmark

    with pytest.raises(SystemExit) as stop:
        feclip_benchmark.main(["--train-on", "mvtec", "--eval-on", "mvtec", "--mvtec-root", str(mvtec)])
    assert stop.value.code == 2 and "not zero-shot" in capsys.readouterr().err
