"""Training side (TensorFlow, the [train] extra): corpora, models, evaluation, export."""
