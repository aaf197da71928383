"""Embed-RL: train a Reasoner with embedder-guided GRPO; a thin wrapper around
`unime_hf.scripts.train_reasoner.main`.

```bash
python examples/train_reasoner.py --config examples/configs/reasoner_shapes.yaml
accelerate launch --num_processes 8 examples/train_reasoner.py --config examples/configs/reasoner_qwen3vl.yaml
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/train_reasoner.py \
    --config examples/configs/reasoner_qwen3vl.yaml
```

Every option of the YAML can be overridden on the command line (`--max_steps 100`); `--help` lists them.
"""

import sys

from unime_hf.scripts.train_reasoner import main

if __name__ == "__main__":
    sys.exit(main())
