import numpy as np
import pytest
import torch

from hdmap.data.transforms import MapTransform, output_size


def test_aspect_size_rounds_to_patch_multiple():
    assert output_size(31, 95, 378, "aspect", 14) == (126, 378)
    assert output_size(31, 95, 518, "nearest", 14) == (518, 518)


@pytest.mark.parametrize("resize", ["nearest", "bilinear", "aspect"])
def test_resize_keeps_values(resize):
    array = np.full((31, 95), 1.7, np.float32)
    array[9:12, :] = 2.9
    x = MapTransform(image_size=112, resize=resize, normalisation="none", multiple=14)(array)
    assert x.shape[0] == 3 and torch.equal(x[0], x[2])
    assert x.max().item() == pytest.approx(2.9, rel=1e-5)  # no clipping, no 0..255 conversion
    assert x.min().item() == pytest.approx(1.7, rel=1e-5)


def test_nearest_only_copies_pixels():
    array = np.random.default_rng(0).random((31, 95), dtype=np.float32) * 3
    x = MapTransform(image_size=224, resize="nearest", normalisation="none", multiple=14)(array)
    assert set(np.unique(x[0].numpy())) <= set(np.unique(array))


def test_normalisations():
    array = np.ones((31, 95), np.float32)
    imagenet = MapTransform(28, "nearest", "imagenet", 14)(array)
    assert imagenet[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)
    own = MapTransform(28, "nearest", "backbone", 14, ((0.5,) * 3, (0.5,) * 3))(array)
    assert own[1, 0, 0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalisation"):
        MapTransform(28, "nearest", "weird", 14)
