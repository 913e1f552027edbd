"""Training of the minutiae model: ``python -m models.train --help`` (needs the ``train`` extra)."""
