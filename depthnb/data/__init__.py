"""Data: file formats (`io`), the built-in renderer (`synthetic`), and torch Datasets and transforms
(`datasets`)."""
