"""Shipped ONNX models, their manifest and model card; training code under models/train."""
