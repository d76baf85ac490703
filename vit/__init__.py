"""Vision Transformer on CIFAR-10 (seed 001): model, data, augmentation, task, offline prep."""
