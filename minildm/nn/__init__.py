"""Hand-written neural network parts: attention, transformer blocks, the U-Net."""
