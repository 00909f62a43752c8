"""Model export: ONNX with onnxruntime parity checks."""

from mien.export.onnx import OnnxExportReport, export_onnx, export_registered

__all__ = ["OnnxExportReport", "export_onnx", "export_registered"]
