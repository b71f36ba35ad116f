"""The only place that knows images from text (DESIGN: modality adapter)."""
