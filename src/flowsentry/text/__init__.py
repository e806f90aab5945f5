"""Text for language models: job sentences, training-set augmentation, prompts."""
