"""Image diffusion on torch: sampling (schedules, samplers, guidance) and the model families that feed it."""
