"""The convolutional VAE: shapes for every bundled image size, decoding of prior codes."""

from __future__ import annotations

import pytest
import torch

from tunelab.models.vae import VAE, VAEConfig


@pytest.mark.parametrize(
    ("channels", "size"), [(1, (8, 8)), (1, (28, 28)), (3, (32, 32)), (1, (7, 5))]
)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_shapes_round_trip(channels: int, size: tuple[int, int], depth: int) -> None:
    config = VAEConfig(
        in_channels=channels,
        image_size=size,
        latent_dim=6,
        base_width=4,
        depth=depth,
        fc_width=8 if depth == 2 else 0,
    )
    model = VAE(config)
    x = torch.rand(5, channels, *size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 6)
    logits, mu2, logvar2 = model(x, torch.randn(5, 6))
    assert logits.shape == x.shape
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    assert torch.isfinite(logits).all()


def test_decode_random_codes_gives_logits_of_image_shape() -> None:
    model = VAE(VAEConfig(in_channels=1, image_size=(28, 28), latent_dim=3, base_width=4))
    logits = model.decode(torch.randn(7, 3))
    assert logits.shape == (7, 1, 28, 28)
    # Logits, not probabilities: a freshly built decoder is not squashed into [0, 1].
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_forward_without_noise_decodes_the_posterior_mean() -> None:
    model = VAE(VAEConfig(in_channels=3, image_size=(32, 32), latent_dim=4, base_width=4))
    x = torch.rand(2, 3, 32, 32)
    mu, _ = model.encode(x)
    logits, _, _ = model(x)
    assert torch.allclose(logits, model.decode(mu))


def test_log_variance_is_clamped_to_a_finite_range() -> None:
    model = VAE(VAEConfig(in_channels=1, image_size=(8, 8), latent_dim=2, base_width=4))
    with torch.no_grad():
        model.to_posterior.bias.fill_(1e4)
    _, logvar = model.encode(torch.rand(1, 1, 8, 8))
    assert torch.isfinite(logvar.exp()).all()


def test_gradients_reach_the_encoder() -> None:
    model = VAE(VAEConfig(in_channels=1, image_size=(8, 8), latent_dim=2, base_width=4))
    logits, mu, logvar = model(torch.rand(4, 1, 8, 8), torch.randn(4, 2))
    (logits.sum() + mu.sum() + logvar.sum()).backward()
    assert model.encoder[0].weight.grad is not None
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_rejects_an_empty_architecture() -> None:
    with pytest.raises(ValueError):
        VAE(VAEConfig(in_channels=1, image_size=(8, 8), depth=0))
