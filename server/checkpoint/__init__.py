"""The diffusers core: one base under every checkpoint engine (the SD1.5/SDXL engine in ``server/diffusion``, the
Flux/SD3 and newer families' engine in ``server/families``). Modules, one job each:

- ``engine``: ``CheckpointEngine`` — the checkpoint kept warm (load, unload, warm-up), the job lock, out-of-memory
  fallbacks and errors, the NaN check and float → uint8, progress and previews from a pipeline's step callback, and
  cancellation between steps. A specialisation fills in how a checkpoint loads and the job's recipe.
- ``jobparts``: a job as a diffusers engine sees it: its working job (outpaint's extended canvas), init image, seeds
  and strength, and the result layers composited by the soft mask.
"""
