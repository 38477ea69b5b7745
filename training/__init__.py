"""Training side of emostream (TensorFlow, the [train] extra): corpora, models, evaluation, export."""
