"""The sampling core: sigma schedules, model sampling types, noise, samplers and classifier-free guidance.

Torch only (no diffusers at import time). ``model_sampling`` turns a network's raw output into a denoised estimate,
``schedules`` picks the sigmas to walk, ``noise`` draws the seeded noise, ``samplers`` walk the sigmas with a
denoiser built by ``guidance``; ``ksampler`` runs one KSampler pass.
"""
