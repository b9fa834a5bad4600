"""Plain PyTorch modules with typed configs: they know nothing of Optuna, MLflow or data sets."""

if not __name__.startswith("tunelab."):  # the repository folder, imported by its bare name
    raise ImportError(
        f"import tunelab.{__name__}, not {__name__}: the folder installs as tunelab.{__name__} "
        "(a second name would load every module twice)"
    )

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
