"""Chat templates of the real checkpoints' shape and their special tokens, for the families' tiny builders.

ChatML (Qwen2, Qwen2-VL, InternVL2), "USER: ... ASSISTANT:" (LLaMA chat, LLaVA-1.5), "User: ...<end_of_utterance>
\\nAssistant:" (Idefics3, SmolVLM). IMAGE stands where the family's image placeholder goes.
"""

from __future__ import annotations

_CONTENT = ("{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}IMAGE{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{% endif %}")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAVA_CHAT = ("{% for m in messages %}{% if m['role'] == 'system' %}" + _CONTENT + "\n"
              "{% elif m['role'] == 'user' %}USER: " + _CONTENT + " "
              "{% else %}ASSISTANT: " + _CONTENT + "</s>{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
IDEFICS_CHAT = ("<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}: " + _CONTENT +
                "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
