"""Model cards and Hub uploads: `render_embedding_card`, `render_reranker_card`, `render_reasoner_card`,
`write_model_card`, `card_for_checkpoint` and `push_to_hub`. Imported lazily, so `import unime_hf.hub` is cheap."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "render_card": "unime_hf.hub.model_card",
    "render_embedding_card": "unime_hf.hub.model_card",
    "render_reranker_card": "unime_hf.hub.model_card",
    "render_reasoner_card": "unime_hf.hub.model_card",
    "write_model_card": "unime_hf.hub.model_card",
    "card_for_checkpoint": "unime_hf.hub.model_card",
    "flatten_results": "unime_hf.hub.model_card",
    "results_to_eval_results": "unime_hf.hub.model_card",
    "push_to_hub": "unime_hf.hub.push",
    "validate_checkpoint_folder": "unime_hf.hub.push",
    "validate_repo_id": "unime_hf.hub.push",
    "HubUnreachableError": "unime_hf.hub.push",
}

if TYPE_CHECKING:
    from unime_hf.hub.model_card import (
        card_for_checkpoint as card_for_checkpoint,
    )
    from unime_hf.hub.model_card import (
        flatten_results as flatten_results,
    )
    from unime_hf.hub.model_card import (
        render_card as render_card,
    )
    from unime_hf.hub.model_card import (
        render_embedding_card as render_embedding_card,
    )
    from unime_hf.hub.model_card import (
        render_reasoner_card as render_reasoner_card,
    )
    from unime_hf.hub.model_card import (
        render_reranker_card as render_reranker_card,
    )
    from unime_hf.hub.model_card import (
        results_to_eval_results as results_to_eval_results,
    )
    from unime_hf.hub.model_card import (
        write_model_card as write_model_card,
    )
    from unime_hf.hub.push import (
        HubUnreachableError as HubUnreachableError,
    )
    from unime_hf.hub.push import (
        push_to_hub as push_to_hub,
    )
    from unime_hf.hub.push import (
        validate_checkpoint_folder as validate_checkpoint_folder,
    )
    from unime_hf.hub.push import (
        validate_repo_id as validate_repo_id,
    )


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unime_hf.hub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
