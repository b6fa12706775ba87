"""ATS put into each model family's blocks: one small module per family (``vit.py``: timm
ViT / DeiT; ``timesformer.py``; ``xvit.py``). :func:`ats_video.apply_ats` picks the module from
the family registry (:mod:`ats_video.families`).
"""
