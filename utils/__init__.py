"""Shared core utilities: tensor layouts, input checks, filters, flow, metrics (no ComfyUI imports)."""
