"""GPart in a few lines, fully offline: a tiny RoBERTa built from its config.

    uv run python examples/quickstart.py

With a real checkpoint, load `AutoModelForSequenceClassification.from_pretrained(...)` from
a hub id or a local directory instead of building the model from a config.
"""

import tempfile

import torch
from peft import PeftModel, get_peft_model
from transformers import RobertaConfig, RobertaForSequenceClassification

import gpart  # noqa: F401  (registers GPart with peft)
from gpart import GPartConfig

torch.manual_seed(0)
workdir = tempfile.mkdtemp()
config = RobertaConfig(
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    num_labels=2,
)
RobertaForSequenceClassification(config).save_pretrained(f"{workdir}/base")  # a "checkpoint"

base = RobertaForSequenceClassification.from_pretrained(f"{workdir}/base")
model = get_peft_model(base, GPartConfig(d=1024, gpart_dropout=0.1, task_type="SEQ_CLS"))
model.print_trainable_parameters()  # d + the classifier head

x = torch.randint(3, 1000, (8, 16))
y = torch.randint(0, 2, (8,))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
model.train()
for _ in range(20):
    loss = model(input_ids=x, labels=y).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
print(f"loss after 20 steps: {loss.item():.4f}")

model.eval()
logits = model(input_ids=x).logits
model.save_pretrained(f"{workdir}/adapter")  # theta (d floats) + the head, and the config
fresh = RobertaForSequenceClassification.from_pretrained(f"{workdir}/base")
reloaded = PeftModel.from_pretrained(fresh, f"{workdir}/adapter").eval()
print("reloaded logits identical:", torch.equal(reloaded(input_ids=x).logits, logits))

merged = model.merge_and_unload()  # a plain RobertaForSequenceClassification again
print("merged logits match:", torch.allclose(merged(input_ids=x).logits, logits, atol=1e-5))
