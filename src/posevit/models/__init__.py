"""Model architectures registered with timm, so `timm.create_model(model.name)` finds them."""

from posevit.models import convstem_vit  # noqa: F401  (registers vit_convstem_tiny)
