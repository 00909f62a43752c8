"""Pure ``torch.nn.Module`` models by family (no Lightning, no config frameworks)."""
