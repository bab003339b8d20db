"""The image scene kind: Sort-of-CLEVR-style scenes (scenes.py), their questions and captions (questions.py),
the written LLaVA-format dataset (dataset.py), its tokenizer (vocab.py), the tiny ViT pretrained on per-patch
labels (encoder.py), the LM pretrained on the scenes' text (language.py), their cache entries (assets.py),
the kind's defaults and checks (settings.py), and the `SceneKind` the core gets (kind.py)."""
