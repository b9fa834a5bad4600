import pytest
import torch

from tunelab.models.cnn import CNN, CNNConfig


@pytest.mark.parametrize(
    ("channels", "size", "blocks"),
    [(1, (8, 8), 3), (1, (28, 28), 2), (3, (32, 32), 3), (1, (1, 1), 1), (3, (10, 12), 2)],
)
def test_cnn_is_shaped_from_the_data(channels, size, blocks):
    model = CNN(
        CNNConfig(
            in_channels=channels,
            image_size=size,
            num_classes=7,
            conv_blocks=blocks,
            input_mean=(0.5,) * channels,
            input_std=(0.25,) * channels,
        )
    )
    x = torch.rand(5, channels, *size)
    assert model(x).shape == (5, 7)
    assert model.embed(x).shape == (5, model.config.fc_width)


def test_options_change_the_architecture():
    plain = CNN(
        CNNConfig(
            in_channels=1,
            image_size=(28, 28),
            num_classes=10,
            batch_norm=False,
            fc_width=0,
            pooling="avg",
        )
    )
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in plain.modules())
    assert plain(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="pooling"):
        CNN(CNNConfig(in_channels=1, image_size=(28, 28), num_classes=10, pooling="median"))
