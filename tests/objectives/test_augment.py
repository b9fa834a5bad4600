import torch

from tunelab.objectives.augment import AugmentConfig, augment_batch


def _images(n=8, size=12):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(1))


def test_all_strengths_zero_is_the_identity():
    x = _images()
    assert augment_batch(x, AugmentConfig()) is x


def test_flip_with_probability_one_mirrors_every_image():
    x = _images()
    out = augment_batch(x, AugmentConfig(hflip=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.flip(x, dims=[3]), atol=1e-5, rtol=0)


def test_padded_crop_is_a_whole_pixel_shift_with_zero_fill():
    x = _images(n=32)
    out = augment_batch(x, AugmentConfig(crop_padding=2), torch.Generator().manual_seed(0))
    for original, shifted in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.allclose(_shift(original, dy, dx), shifted, atol=1e-5)
        ]
        assert matches, "every output is the input shifted by at most the padding"


def _shift(img, dy, dx):
    out = torch.zeros_like(img)
    h, w = img.shape[1:]
    src = img[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    out[:, max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)] = src
    return out


def test_rotation_keeps_shape_and_mass_and_is_reproducible():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # a bar in the middle: rotating keeps it inside the frame
    cfg = AugmentConfig(rotation=30)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.05, atol=0)
    assert not torch.allclose(a, x)
