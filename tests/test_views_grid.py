"""The Qt-free geometry of the views: tiles, lanes, bars, keyboard steps, levels, boxes."""

import numpy as np
import pytest

from cnnplay.app.views import grid as g


def test_mosaic_places_each_channel_in_its_tile_and_fills_gaps():
    maps = np.arange(5 * 3 * 4, dtype=np.float32).reshape(5, 3, 4)
    grid = g.TileGrid(tuple(range(5)), 3, 4, cols=2, gap=1)
    m = grid.mosaic(maps)
    assert m.shape == grid.shape == (3 * 4 - 1, 2 * 5 - 1)
    for t in range(5):
        oy, ox = grid.origin(t)
        np.testing.assert_array_equal(m[oy:oy + 3, ox:ox + 4], maps[t])
    assert np.isnan(m[3, :]).all() and np.isnan(m[:, 4]).all()  # gaps
    assert np.isnan(m[8:, 5:]).all()  # the empty sixth tile


@pytest.mark.parametrize("h,w,cols", [(3, 7, 3), (7, 3, 2), (1, 9, 4), (5, 5, 1)])
def test_locate_inverts_the_layout_on_non_square_tiles(h, w, cols):
    channels = (4, 5, 6, 7, 8)  # a page that does not start at channel 0
    grid = g.TileGrid(channels, h, w, cols)
    seen = set()
    for t, c in enumerate(channels):
        oy, ox = grid.origin(t)
        for y in range(h):
            for x in range(w):
                for fy, fx in ((0.01, 0.01), (0.5, 0.5), (0.99, 0.99)):
                    assert grid.locate(ox + x + fx, oy + y + fy) == (c, y, x)
                seen.add((c, y, x))
    assert len(seen) == len(channels) * h * w
    # gaps and outside
    assert grid.locate(w + 0.5, 0.5) is None if cols > 1 else True
    assert grid.locate(-0.1, 0.5) is None
    assert grid.locate(0.5, grid.shape[0] + 0.5) is None
    assert grid.locate(float("nan"), 1.0) is None


def test_locate_on_the_empty_tail_of_the_last_row_is_none():
    grid = g.TileGrid((0, 1, 2), 2, 2, cols=2)
    oy, ox = grid.origin(3)
    assert grid.locate(ox + 0.5, oy + 0.5) is None


def test_choose_cols_and_pages():
    assert g.choose_cols(1, 10, 10) == 1
    assert 1 <= g.choose_cols(64, 8, 8) <= 64
    assert g.choose_cols(16, 256, 256, aspect=4.0) == 8
    assert g.page_channels(150, 0) == tuple(range(64))
    assert g.page_channels(150, 2) == tuple(range(128, 150))
    assert g.page_channels(150, 9) == tuple(range(128, 150))  # clamped
    assert g.page_count(150) == 3 and g.page_count(1) == 1


def test_lanes_and_bars():
    assert g.locate_lane(3.2, 1.7, (10, 11, 12), 5) == (11, 3)
    assert g.locate_lane(5.0, 0.5, (10,), 5) is None
    assert g.locate_lane(0.5, 3.0, (10, 11, 12), 5) is None
    assert g.locate_bar(6.9, 7) == (6,)
    assert g.locate_bar(7.0, 7) is None
    x, y = g.lanes_curve(np.array([[1.0, -1.0], [0.0, 2.0]], np.float32), np.array([1.0, 2.0]))
    assert np.isnan(x[2]) and np.isnan(y[5])
    np.testing.assert_allclose(y[[0, 1, 3, 4]], [0.05, 0.95, 1.5, 1.05], atol=1e-6)


def test_step_unit_moves_and_clamps():
    assert g.step_unit((0, 2, 3), (4, 5, 6), "left") == (0, 2, 2)
    assert g.step_unit((0, 0, 5), (4, 5, 6), "right") == (0, 0, 5)
    assert g.step_unit((0, 0, 5), (4, 5, 6), "up") == (0, 0, 5)
    assert g.step_unit((0, 0, 5), (4, 5, 6), "down") == (0, 1, 5)
    assert g.step_unit((3, 0, 5), (4, 5, 6), "next") == (3, 0, 5)
    assert g.step_unit((1, 4), (3, 9), "down") == (2, 4)
    assert g.step_unit((1, 4), (3, 9), "right") == (1, 5)
    assert g.step_unit((4,), (10,), "left") == (3,)
    assert g.step_unit((4,), (10,), "up") == (4,)


def test_levels_are_symmetric_when_values_can_be_negative():
    assert g.layer_levels(-0.5, 2.0) == ((-2.0, 2.0), True)
    assert g.layer_levels(0.0, 3.0) == ((0.0, 3.0), False)
    assert g.layer_levels(1.0, 1.0) == ((1.0, 2.0), False)
    maps = np.array([[[-2.0, 1.0]], [[0.0, 4.0]]], np.float32)
    np.testing.assert_allclose(g.per_channel_normalized(maps, True), [[[-1, 0.5]], [[0, 1]]])
    np.testing.assert_allclose(g.per_channel_normalized(maps, False), [[[0, 1]], [[0, 1]]])
    assert g.finite_range(np.array([np.nan, 1.0, 3.0])) == (1.0, 3.0)


def test_boxes_clip_and_count_padding():
    assert g.clip_box(((-2, 3), (4, 9)), (5, 6)) == ((0, 3), (4, 6))
    assert g.padding_fraction(((-2, 3), (0, 2)), (5, 6)) == pytest.approx(2 / 5)
    assert g.padding_fraction(((0, 1), (0, 1)), (5, 6)) == 0.0
    grid = g.TileGrid((0, 1), 4, 4, cols=2)
    rects = g.tile_box_rects(grid, ((-1, 2), (1, 9)))
    assert rects == [(1, 0, 4, 2), (5 + 1, 0, 5 + 4, 2)]  # one rectangle per tile, clipped to it
    assert g.tile_box_rects(grid, ((-3, -1), (1, 9))) == []  # only padding: nothing to outline
    # a 1x1 field on a shrunk map: widened about its centre to `least` map px
    assert g.tile_box_rects(grid, ((1, 2), (1, 2)), least=3) == [(0, 0, 3, 3), (5, 0, 8, 3)]
