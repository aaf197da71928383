"""Jinja model card templates (package data): embedding.md, reranker.md, reasoner.md."""
