"""One process of `test_math_distributed`'s FSDP check (run under ``torch.distributed.run``).

FSDP1 as ``configs/accelerate/fsdp.yaml`` sets it up and transformers' Trainer applies it to
a peft model (peft's ``fsdp_auto_wrap_policy``: one unit per decoder layer plus trainable
leaf layers; ``FULL_SHARD``; ``use_orig_params``), driven by torch directly: accelerate
enables FSDP on GPUs only. Trains GPart on a tiny Llama for a few AdamW steps, each process
on its half of every global batch, then gathers the full state dict and saves the adapter
with the runner's own `save_trained`.

    python -m torch.distributed.run --nproc_per_node 2 fsdp_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

D = 64
LR = 1e-2
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def build(model_dir: str):
    """The GPart model every process (and the one-process reference) starts from."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from gpart import GPartConfig

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return get_peft_model(base, GPartConfig(d=D, target_modules=TARGETS))


def global_batches(steps: int = 3, batch: int = 4, length: int = 12) -> list[torch.Tensor]:
    """Equal-length sequences, every token a label: each process's mean loss over its half
    weighs tokens as the one-process mean does, so averaging gradients over processes
    (what FSDP's reduce-scatter does) gives the global batch's gradient."""
    g = torch.Generator().manual_seed(1)
    return [torch.randint(5, 250, (batch, length), generator=g) for _ in range(steps)]


def train(model, rank: int = 0, world: int = 1) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    model.train()
    for ids in global_batches():
        local = ids.chunk(world)[rank]
        model(input_ids=local, labels=local).loss.backward()
        opt.step()
        opt.zero_grad()


def main(model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from peft.utils.other import fsdp_auto_wrap_policy
    from torch.distributed.fsdp import FullStateDictConfig, ShardingStrategy, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from gpart.runners.common import save_trained

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = build(model_dir)
    wrapped = FSDP(
        model,
        auto_wrap_policy=fsdp_auto_wrap_policy(model),
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True,
        device_id=torch.device("cpu"),
    )
    # theta is sharded like any root-unit tensor: this process holds part of it (or none)
    local = model.base_model.gpart_theta_d["default"].numel()
    train(wrapped, rank, world)
    gather = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, gather):
        state = wrapped.state_dict()
    if rank == 0:
        save_trained(model, Path(out_dir) / "adapter", state_dict=state)
        (Path(out_dir) / "local_theta_numel.txt").write_text(str(local))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
