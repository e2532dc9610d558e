"""Fine-tuning on one's own sounds: the data (:mod:`.data`) and the LoRA training loop (:mod:`.train`)."""
