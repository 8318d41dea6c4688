"""The quantized GGUF LLM in llama.cpp.

Takes a chat prompt with soft-token slots and gives generated text: `prompt` (where the
soft tokens sit in the chat template), `runtime` (batched generation in llama-cpp-python),
`requantize` (a GGUF's weights as Q8_0, cached) and `lora` (adapters between PEFT and GGUF).
Knows nothing of encoders: a soft token is only a float matrix here.
"""
