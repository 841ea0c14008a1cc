"""``torchrun`` entry of the distributed training tests: ``ddp_check.py CONFIG [key=value ...]``.

With ``SEEDVR2_SHARD_REPORT=DIR`` set, each rank also writes ``DIR/rank<r>.json``: for every
parameter of every network, whether it is a DTensor, the dims it is sharded on, its local and
global shapes.
"""

import json
import os
import sys
from pathlib import Path

from torch.distributed.tensor import DTensor

from seedvr2.pipeline.distributed import exit_rank
from seedvr2.train.config import load_config
from seedvr2.train.distributed import init_distributed, shutdown
from seedvr2.train.loop import Trainer


def shard_report(networks: dict) -> dict:
    report = {}
    for name, module in networks.items():
        report[name] = {
            key: {"dtensor": isinstance(p, DTensor),
                  "shard_dims": [x.dim for x in getattr(p, "placements", ()) if x.is_shard()],
                  "local": list(p.to_local().shape if isinstance(p, DTensor) else p.shape),
                  "global": list(p.shape)}
            for key, p in module.named_parameters()
        }
    return report


if __name__ == "__main__":
    cfg = load_config(sys.argv[1], sys.argv[2:])
    ctx = init_distributed(cfg.run)
    try:
        trainer = Trainer(cfg, ctx)
        trainer.fit()
        folder = os.environ.get("SEEDVR2_SHARD_REPORT")
        if folder:
            path = Path(folder) / f"rank{ctx.rank}.json"
            path.write_text(json.dumps(shard_report(trainer.stage.networks)))
    finally:
        shutdown(ctx)
    exit_rank(0)
