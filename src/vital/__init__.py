"""vital: clinician-aligned biomedical visual instruction tuning data."""
__version__ = "0.1.0"
