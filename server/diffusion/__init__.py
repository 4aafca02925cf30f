"""The diffusers engine: SD1.5-class and SDXL-class checkpoints, every mode, ControlNets, LoRAs and embeddings."""
