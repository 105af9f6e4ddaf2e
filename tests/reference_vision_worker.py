"""Runs the paper authors' ViT fine-tuning script (SamsungLabs/GPart at 320f0c1,
``src/scripts/vision/finetune_ViT.py``, a module-level script) for
`tests/test_reference_parity_vision.py`, in a process of its own with their tree first on
``sys.path`` (``import peft`` is their fork; ``gpart`` is never imported).

    python reference_vision_worker.py SPEC.json OUT.json

SPEC.json: ``{"ref_src", "hub_dir", "model", "args", "threads"}`` (``args``: the script's
command line; ``threads``: torch's intra-op threads, as the test runs ours). Run it in the directory that holds ``data/dtd/images``: the script reads DTD from
there with datasets' ``imagefolder``, unshimmed. Shimmed here, and only here:

* hub downloads: ``datasets.load_dataset(NAME, split=S)`` reads ``load_from_disk(hub_dir /
  NAME)[S]``, and the two checkpoint names (``google/vit-*-patch16-224-in21k``) load
  ``model`` (image processor and weights);
* ``evaluate.load("accuracy")``: accuracy;
* transformers 5 names ViT / DINOv2's query and value projections ``q_proj`` / ``v_proj``
  (``query`` / ``value`` when the script was written): ``GPartConfig``'s targets are renamed
  to the same layers' new names;
* ``TrainingArguments(fp16=True)`` trains in fp32 without CUDA (fp16 needs a GPU).

OUT.json gets the loss of every training forward pass, each split's members in order (the
SHA-1 of the decoded RGB pixels), the selected model's theta and head, the best selection
accuracy and the test results.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
import types
from pathlib import Path

import numpy as np

CHECKPOINTS = ("google/vit-base-patch16-224-in21k", "google/vit-large-patch16-224-in21k")
# transformers 5's names for the layers the script targets as query / value
RENAMED_TARGETS = {"query": "q_proj", "value": "v_proj"}


def pixel_digest(image) -> str:
    """SHA-1 of the decoded RGB pixels: the same image whatever file or bytes it came from."""
    pixels = np.asarray(image.convert("RGB"))
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


class _Accuracy:
    def compute(self, predictions, references) -> dict[str, float]:
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def _members(dataset) -> list[str]:
    dataset.reset_format()  # drop the script's set_transform: the images, undecorated
    column = "image" if "image" in dataset.column_names else "img"
    return [pixel_digest(image) for image in dataset[column]]


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ref_src = Path(spec["ref_src"])
    sys.path[:0] = [str(ref_src), str(ref_src / "src")]
    evaluate = types.ModuleType("evaluate")
    evaluate.load = lambda name, *args, **kwargs: _Accuracy()  # noqa: ARG005
    sys.modules["evaluate"] = evaluate

    import datasets
    import peft
    import torch
    import transformers

    torch.set_num_threads(spec["threads"])
    hub_dir = Path(spec["hub_dir"])
    load_dataset = datasets.load_dataset

    def load_hub_or_folder(path, *args, split=None, **kwargs):
        if path == "imagefolder":  # DTD: read from disk by the library, as theirs
            return load_dataset(path, *args, split=split, **kwargs)
        return datasets.load_from_disk(str(hub_dir / path.replace("/", "__")))[split]

    datasets.load_dataset = load_hub_or_folder

    def local(loader):
        original = loader.from_pretrained

        def from_pretrained(name, *args, **kwargs):
            return original(spec["model"] if name in CHECKPOINTS else name, *args, **kwargs)

        loader.from_pretrained = from_pretrained

    local(transformers.AutoImageProcessor)
    local(transformers.AutoModelForImageClassification)

    gpart_config = peft.GPartConfig

    def renamed_targets(*args, target_modules=None, **kwargs):
        names = [RENAMED_TARGETS.get(t, t) for t in target_modules or ()]
        return gpart_config(*args, target_modules=names or target_modules, **kwargs)

    peft.GPartConfig = renamed_targets

    training_arguments = transformers.TrainingArguments

    def fp16_on_cuda_only(*args, **kwargs):
        kwargs["fp16"] = bool(kwargs.get("fp16")) and torch.cuda.is_available()
        return training_arguments(*args, **kwargs)

    transformers.TrainingArguments = fp16_on_cuda_only

    losses: list[float] = []
    get_peft_model = peft.get_peft_model

    def recorded(*args, **kwargs):
        model = get_peft_model(*args, **kwargs)

        def hook(module, inputs, output):
            if module.training:
                losses.append(output.loss.item())

        model.register_forward_hook(hook)
        return model

    peft.get_peft_model = recorded

    script = ref_src / "src" / "scripts" / "vision" / "finetune_ViT.py"
    sys.argv = [str(script), *spec["args"]]
    done = runpy.run_path(str(script), run_name="__main__")

    state = {k: v.detach().cpu() for k, v in done["lora_model"].state_dict().items()}
    head = {k: v for k, v in state.items() if "classifier.modules_to_save" in k}
    record = {
        "theta": next(v for k, v in state.items() if "gpart_theta" in k).tolist(),
        "head_weight": next(v for k, v in head.items() if k.endswith(".weight")).tolist(),
        "head_bias": next(v for k, v in head.items() if k.endswith(".bias")).tolist(),
        "losses": losses,
        "train": _members(done["train_ds"]),
        "selection": _members(done["val_ds"]),
        "test": _members(done["test_ds"]),
        "best_selection_accuracy": done["trainer"].state.best_metric,
        "global_step": done["trainer"].state.global_step,
        "test_results": done["test_results"],
    }
    Path(out_path).write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:])
