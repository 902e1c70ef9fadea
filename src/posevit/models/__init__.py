"""Models: architectures registered with timm, the factory, freezing, the model's transforms and the bundle.

`factory` and `bundle` import `convstem_vit`, which registers the project's own timm models, so
`timm.create_model(name)` finds them there. The package itself imports nothing: `bundle_config`,
`preprocess` and `onnx_runtime` serve the ONNX backends where neither torch nor timm is installed.
"""
