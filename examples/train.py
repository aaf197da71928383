"""Train a UniME embedding model; a thin wrapper around `unime_hf.scripts.train_embedding.main`.

```bash
python examples/train.py --config examples/configs/shapes.yaml
accelerate launch --num_processes 2 examples/train.py --config examples/configs/qwen2vl_2b.yaml
accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml examples/train.py \
    --config examples/configs/qwen2vl_2b.yaml
```

Every option of the YAML can be overridden on the command line (`--max_steps 100`); `--help` lists them.
"""

import sys

from unime_hf.scripts.train_embedding import main

if __name__ == "__main__":
    sys.exit(main())
