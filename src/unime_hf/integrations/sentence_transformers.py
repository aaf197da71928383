"""sentence-transformers integration.

A saved UniME checkpoint carries `modules.json` naming [`UniMESentenceTransformerModule`], so
`SentenceTransformer(path, trust_remote_code=True)` loads it; this module re-exports that class for use from Python,
e.g. to wrap an in-memory model: `SentenceTransformer(modules=[UniMESentenceTransformerModule(model, processor)])`.
"""

from unime_hf.models.sentence_transformers_unime import UniMESentenceTransformerModule

__all__ = ["UniMESentenceTransformerModule"]
