"""RepoTune trainer: LoRA fine-tuning of GGUF code models in PyTorch, in llama.cpp's own weight layout."""
__version__ = "0.1.0"
