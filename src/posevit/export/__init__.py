"""Export: the bundle as ONNX (fp32, and dynamically quantized int8), with parity proven on the test split."""
