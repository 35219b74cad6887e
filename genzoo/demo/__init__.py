"""``genzoo demo``: a local page to try models and to judge real from fake by eye (gradio, the ``demo`` extra).

Nothing here imports gradio at import time: ``genzoo.demo.judgements`` (the human-evaluation answers) is
used by ``genzoo report`` without it.
"""
