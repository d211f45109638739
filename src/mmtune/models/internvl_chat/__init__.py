"""InternVL2 / InternVL2.5 / Vintern chat checkpoints (`InternVLChatModel`, model type `internvl_chat`, remote
code) turned into transformers' native `InternVLForConditionalGeneration` folder, offline and without running
the checkpoint's code: the safetensors are read and renamed (weights.py), the config, processor and chat
template are written from the original config.json and tokenizer (convert.py), and a `model.name` that points at
such a folder is converted once into a cache keyed by its content (cache.py).
"""
