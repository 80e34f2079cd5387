"""Applications of a latent diffusion model (LDM sec. 4.3-4.5), each a plain function with its
denoising loop written out: text- and class-to-image with classifier-free guidance,
image-to-image (SDEdit), editing by DDIM inversion, inpainting (a trained concat model, or training-free),
outpainting, super-resolution."""

from minildm.pipelines.image_to_image import image_to_image
from minildm.pipelines.inpaint import (
    InpaintingBatches,
    init_from_base_model,
    inpaint,
    inpaint_training_free,
    inpainting_concat,
)
from minildm.pipelines.inversion_edit import edit_by_inversion, invert_images, regenerate
from minildm.pipelines.masks import MaskConfig, check_mask, latent_mask, random_masks
from minildm.pipelines.outpaint import outpaint, outpaint_canvas
from minildm.pipelines.sampling import SAMPLERS, guided_model_output, make_sampler
from minildm.pipelines.super_resolution import (
    SuperResolutionBatches,
    downsample,
    super_resolve,
    upsample,
)
from minildm.pipelines.text_to_image import class_to_image, text_to_image

__all__ = [
    "SAMPLERS",
    "InpaintingBatches",
    "MaskConfig",
    "SuperResolutionBatches",
    "check_mask",
    "class_to_image",
    "downsample",
    "edit_by_inversion",
    "guided_model_output",
    "image_to_image",
    "init_from_base_model",
    "inpaint",
    "inpaint_training_free",
    "inpainting_concat",
    "invert_images",
    "latent_mask",
    "make_sampler",
    "outpaint",
    "outpaint_canvas",
    "random_masks",
    "regenerate",
    "super_resolve",
    "text_to_image",
    "upsample",
]
