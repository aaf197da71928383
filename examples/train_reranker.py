"""Train a UniME-V2 reranker; a thin wrapper around `unime_hf.scripts.train_reranker.main`.

```bash
python examples/train_reranker.py --config examples/configs/reranker_shapes.yaml
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/train_reranker.py \
    --config examples/configs/reranker_qwen25vl_7b.yaml
```

Every option of the YAML can be overridden on the command line (`--max_steps 100`); `--help` lists them.
"""

import sys

from unime_hf.scripts.train_reranker import main

if __name__ == "__main__":
    sys.exit(main())
