"""What a run is: its typed config and identity, its training recipe, and the composition root that builds it."""
