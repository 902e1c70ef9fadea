"""Example images for the app: a few demo-dataset drawings and real photos of people from scikit-image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from posevit.core.labels import ACTION_CLASSES

DEMO_EXAMPLES = ("cycling", "sleeping", "using_laptop", "calling", "running")
PHOTOS = {"astronaut": "astronaut", "cameraman": "camera"}  # file stem -> skimage.data function


def write_examples(directory: Path, image_size: int = 96, seed: int = 2026) -> list[str]:
    """Write the examples once into `directory` (PNG) and return their paths."""
    import skimage.data

    from posevit.data.demo import render_sample, sample_rng

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_EXAMPLES:
        path = directory / f"demo_{name}.png"
        if not path.exists():
            label = ACTION_CLASSES.index(name)
            render_sample(label, sample_rng(seed, label), image_size).save(path)
        paths.append(str(path))
    for stem, function in PHOTOS.items():
        path = directory / f"{stem}.png"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, function)()).save(path)
        paths.append(str(path))
    return paths
