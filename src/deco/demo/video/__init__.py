"""The video scene kind: shapes that slide and take turns under a clock (scenes.py, drawn with the image
kind's renderer), their time questions (questions.py), the written dataset and its cache entries (data.py),
the frame encoder (encoder.py), the kind's defaults and checks (settings.py), and the `SceneKind` the core
gets (kind.py)."""
