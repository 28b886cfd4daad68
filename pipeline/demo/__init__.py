"""demo stage: the synthetic extract with a known truth (``generator.generate``)."""
