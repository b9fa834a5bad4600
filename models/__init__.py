"""Plain PyTorch modules with typed configs: they know nothing of Optuna, MLflow or data sets."""

from tunelab.models.cnn import CNN, CNNArchitecture, CNNConfig
from tunelab.models.gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from tunelab.models.vae import VAE, VAEArchitecture, VAEConfig

__all__ = [
    "CNN",
    "CNNArchitecture",
    "CNNConfig",
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "VAE",
    "VAEArchitecture",
    "VAEConfig",
]
