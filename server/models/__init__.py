"""Model registry (what is installed, which architecture) and offline loading helpers."""
