"""Prompt text for the CLIP text encoders: the tokenizer (CLIP's BPE vocabulary, shipped), ComfyUI's weighted
prompt syntax and the split of long prompts into 77-token chunks."""
