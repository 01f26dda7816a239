from .accuracy import compute_accuracy
