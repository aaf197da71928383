"""Evaluate an embedding model: a thin wrapper around `unime-hf eval` (`unime_hf.scripts.evaluate.main`).

```bash
python examples/evaluate.py --config examples/configs/eval_shapes.yaml
python examples/evaluate.py --config examples/configs/eval_mmeb.yaml --model runs/unime-v2-2b --max_queries 100
```
"""

from __future__ import annotations

import sys

from unime_hf.scripts.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
