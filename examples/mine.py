"""Hard-negative mining (retrieve, judge, sample); runs under `accelerate launch` too.

    python examples/mine.py all --config examples/configs/mine_shapes.yaml
    accelerate launch --num_processes 2 examples/mine.py retrieve --config examples/configs/mine_shapes.yaml
"""

import sys

from unime_hf.scripts.mine import main

if __name__ == "__main__":
    sys.exit(main())
