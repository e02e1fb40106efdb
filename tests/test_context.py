import pytest
import torch

from hdmap.features.context import add_horizontal_context


def test_shapes_and_off_switch():
    grid = torch.randn(2, 5, 4, 9)
    assert torch.equal(add_horizontal_context(grid, 0), grid)
    assert add_horizontal_context(grid, (0, 1, 3)).shape == (2, 15, 4, 9)


def test_values_are_row_means():
    grid = torch.arange(6, dtype=torch.float32).view(1, 1, 1, 6).repeat(1, 1, 2, 1)
    grid[0, 0, 1] *= 10  # a second row must not leak into the first
    out = add_horizontal_context(grid, 1)
    assert out[0, 1, 0].tolist() == pytest.approx([0.5, 1, 2, 3, 4, 4.5])  # edges average what exists
    assert out[0, 1, 1, 2].item() == pytest.approx(20.0)
    with pytest.raises(ValueError):
        add_horizontal_context(grid, -1)
