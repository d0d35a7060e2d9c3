"""The bench's large and cold sections: plumbing only (no timings)."""

from cnnplay import Network
from cnnplay.bench import cold, large, sections


def test_large_and_cold_are_sections():
    names = sections()
    assert "large" in names and "cold" in names and "forward" in names
    assert callable(large.run) and callable(cold.run)


def test_vgg11_is_vgg11_and_its_layers_are_the_issue_18_shapes():
    net = Network.from_dict(large.VGG11)
    convs = [i for i, t in enumerate(net.layer_types) if t.name == "conv2d"]
    assert [net.output_shapes[i][0] for i in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert net.output_shapes[-1] == (512, 7, 7)
    assert sum(net.macs) > 7.4e9  # VGG-11's convolutions: about 7.6 G multiply-adds
    assert {k for _, _, _, k, *_ in large.LAYERS} == {1, 3}
    assert all(64 <= ci <= 512 and 128 <= co <= 512 and 14 <= s <= 56 for ci, co, s, *_ in large.LAYERS)
    # ResNet's downsampling layers and a dilated one: the shapes neither Winograd nor a plain product serves
    assert {row[4:] for row in large.LAYERS} >= {(2,), (1, 2)}
    algo = large.algorithm(net, convs[-1])
    assert isinstance(algo, str) and algo and algo != "?"
