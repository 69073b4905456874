"""Pruning and quantization pipelines over a trained model: prune -> fine-tune -> compact,
quantize (PTQ / QAT / mixed), with every saving measured."""
