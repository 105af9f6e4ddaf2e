"""`python -m gpart.bench`: training-step time, peak memory and adapter size per method.

Builds a model from a config (no download), wraps it with each method (full fine-tuning,
its forward+backward floor, head only, LoRA, Uni-LoRA, VeRA and GPart's four modes), times
interleaved training steps and prints a markdown table (and writes JSON). `--quantize
nf4|int8` runs the adapter rows on a bitsandbytes-quantized base (`models.ModelSpec.build`).
See `cli.py`.
"""
