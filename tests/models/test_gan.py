from dataclasses import asdict

import pytest
import torch

from tunelab.models.gan import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    resolution_ladder,
)

SIZES = [(1, (8, 8)), (1, (28, 28)), (3, (32, 32))]


@pytest.mark.parametrize(("channels", "size"), SIZES)
@pytest.mark.parametrize("norm", ["batch", "layer", "none", "instance"])
def test_generator_and_discriminator_are_shaped_from_the_data(channels, size, norm):
    gen = Generator(GeneratorConfig(channels, size, latent_dim=16, width=8))
    disc = Discriminator(DiscriminatorConfig(channels, size, width=8, norm=norm))
    images = gen(torch.randn(5, 16))
    assert images.shape == (5, channels, *size)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    assert disc(images).shape == (5,)
    assert GeneratorConfig(**asdict(gen.config)) == gen.config  # checkpointable config


def test_resolution_ladders():
    assert resolution_ladder((8, 8), 3) == [(2, 2), (4, 4), (8, 8)]
    assert resolution_ladder((28, 28), 3) == [(7, 7), (14, 14), (28, 28)]
    assert resolution_ladder((32, 32), 3) == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert resolution_ladder((15, 15), 3) == [(15, 15)]


def test_odd_sized_images_still_work():
    gen = Generator(GeneratorConfig(3, (15, 15), latent_dim=8, width=8))
    disc = Discriminator(DiscriminatorConfig(3, (15, 15), width=8))
    assert disc(gen(torch.randn(2, 8))).shape == (2,)


def test_discriminator_normalisation():
    layer = Discriminator(DiscriminatorConfig(1, (28, 28), norm="layer"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in layer.modules())
    batch = Discriminator(DiscriminatorConfig(1, (28, 28), norm="batch"))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules())
    with pytest.raises(ValueError, match="norm"):
        Discriminator(DiscriminatorConfig(1, (28, 28), norm="spectral"))


def test_per_sample_gradient_penalty_without_batch_norm():
    """With layer norm a sample's score depends on that sample only, so its input gradient is
    zero for every other sample (what WGAN-GP and R1 assume), and double backward works."""
    disc = Discriminator(DiscriminatorConfig(1, (28, 28), width=8, norm="layer"))
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    (grad,) = torch.autograd.grad(disc(x)[0], x, create_graph=True)
    assert grad[1:].abs().max() == 0 and grad[0].abs().max() > 0
    grad.square().sum().backward()
    weights = [m.weight for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
