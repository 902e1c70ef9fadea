"""Models: architectures registered with timm, the factory, freezing, the model's transforms and the bundle.

Importing it registers the project's own timm models, so `timm.create_model(model.name)` finds them.
"""

from posevit.models import convstem_vit  # noqa: F401  (registers vit_convstem_tiny with timm)
