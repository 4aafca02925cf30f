"""Model families beyond SD1.5/SDXL: Flux.1 (dev, schnell, Fill, Kontext) and SD3 / SD3.5, on their own engine.

A package of its own (not more branches in ``server/diffusion``) because these families share nothing with the UNet
engine below the ``core.Engine`` interface: transformer instead of UNet, T5 + CLIP text encoders that usually come as
separate files, flow-matching schedulers, packed latents. Modules, one job each:

- ``specs``: the family table (pipelines per kind of job). Names, variants and recognition from tensors live in
  ``server/models/identify_dit.py``, beside the registry that uses them.
- ``parts``: finding a checkpoint's text encoders and VAE (inside the file or in the models folders).
- ``loading``: building a pipeline offline from the parts and the weightless configs in ``server/configs`` (GGUF
  transformers stay quantized).
- ``controlnets``: which Flux/SD3 ControlNet a control layer uses, its config from a single file's shapes, loading.
- ``memory``: where the weights live (GPU, fp8 storage, model or sequential offload) and the CPU dtype, from numbers.
- ``preview``: progress previews from a latents → RGB map fitted to the checkpoint's VAE.
- ``regions``: a prompt per area on Flux.1, through a mask on the transformer's joint attention; ``regions_zimage``,
  ``regions_klein`` and ``regions_qwen``: the same on Z-Image, Flux.2 Klein and Qwen-Image.
- ``pipes``: a loaded checkpoint (dtype, placement, native side) and the pipeline per kind of job made from it.
- ``checks``: the refusals before anything loads; ``jobparts``: settings, prompts as T5 reads them, result ``info``;
  ``inputs``: image, mask and control arguments per family; ``passes``: one pipeline call per seed, with progress.
- ``decompose``: Qwen-Image-Layered's mode decompose as numbered steps (``layered``: its inputs and result layers).
- ``engine``: ``FamilyEngine``, the peer of the SD1.5/SDXL engine the router picks for these families; its ``recipe``
  is one job as numbered steps.
"""
