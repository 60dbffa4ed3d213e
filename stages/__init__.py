"""One click command per DVC stage: read its params section, call pipeline/, write its outs."""
