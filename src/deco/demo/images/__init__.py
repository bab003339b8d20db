"""The image scene kind: Sort-of-CLEVR-style scenes (scenes.py), their questions and captions (questions.py),
the written LLaVA-format dataset (dataset.py), its tokenizer (vocab.py), the tiny ViT pretrained on per-patch
labels (encoder.py) and the LM pretrained on the scenes' text (language.py)."""
